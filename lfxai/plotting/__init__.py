"""Figures as matplotlib ``Figure`` objects; saving them is the tracker's job."""
