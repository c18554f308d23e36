"""Metrics of explanation quality: representation shift, similarity rates, saliency statistics."""
