"""How much the saliency maps of different latent units overlap (the disVAE study).

Input: saliency ``S`` of shape ``(N, d, H, W)`` (or ``(N, d, C, H, W)``, or any
``(N, d, ...)``): for each of N examples, one non-negative map per latent unit.

- ``pearson`` / ``spearman``: mean off-diagonal Pearson / Spearman correlation between the
  units' maps, each unit's maps of all N examples flattened into one vector (as the
  reference did; NaN when a unit's saliency is constant);
- ``spearman_active``: the same Spearman correlation over the pixels some unit gives
  non-zero saliency only. Pixels every unit ignores (black background against a black
  baseline: most of an MNIST or dSprites image) tie at rank 1 in every map and push
  ``spearman`` towards 1 whatever the units do elsewhere; this variant leaves them out;
- ``cosine``: the cosine similarity of two units' maps per example, averaged over the
  examples (where both maps are non-zero) and over the pairs of units;
- ``entropy``: mean entropy (nats) of each pixel's distribution of saliency over the units,
  ``p_j = S_j / sum_k S_k``, over the pixels with non-zero saliency of all examples (0: one
  unit explains the pixel alone, log d: every unit alike);
- ``active_units``: mean number of units whose share ``p_j`` of a pixel strictly exceeds
  ``1/d``, over the same pixels (units sharing a pixel exactly equally count as none).

Disentangled units that explain different features give low correlations, low entropy and
few active units.

References:
    Crabbé & van der Schaar, "Label-Free Explainability for Unsupervised Models", ICML 2022,
    Section 4.3.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata

SALIENCY_METRICS = ("pearson", "spearman", "spearman_active", "cosine", "entropy", "active_units")


def _as_units(saliency: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(N, d, ...)`` as float64 ``(N, d, P)``, checked."""
    if isinstance(saliency, torch.Tensor):
        saliency = saliency.detach().cpu().numpy()
    array = np.asarray(saliency, dtype=np.float64)
    if array.ndim < 3:
        raise ValueError(f"saliency must be (N, d, ...) with features, got shape {array.shape}")
    if array.shape[1] < 2:
        raise ValueError(f"saliency needs at least 2 latent units, got d={array.shape[1]}")
    if np.any(array < 0):
        raise ValueError("saliency must be non-negative (absolute attributions)")
    return array.reshape(array.shape[0], array.shape[1], -1)


def _mean_off_diagonal(matrices: np.ndarray) -> float:
    """Mean off-diagonal entry of ``(..., d, d)`` matrices, over the leading axes too.

    NaN entries (from constant or zero maps) are left out; NaN if nothing is left.
    """
    d = matrices.shape[-1]
    off = matrices[..., ~np.eye(d, dtype=bool)]
    valid = off[~np.isnan(off)]
    return float(valid.mean()) if len(valid) else float("nan")


def _normalised_rows(units: np.ndarray, center: bool) -> np.ndarray:
    """Each row (last axis) centred (optionally) and scaled to unit norm; zero rows -> NaN."""
    if center:
        units = units - units.mean(axis=-1, keepdims=True)
    norms = np.linalg.norm(units, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, units / np.where(norms > 0, norms, 1.0), np.nan)


def correlation(vectors: np.ndarray) -> np.ndarray:
    """Pearson correlation matrix ``(d, d)`` between the rows of ``(d, P)``."""
    rows = _normalised_rows(vectors, center=True)
    return rows @ rows.T


def cosine(units: np.ndarray) -> np.ndarray:
    """Cosine similarity matrices ``(N, d, d)`` between the units' maps ``(N, d, P)``."""
    rows = _normalised_rows(units, center=False)
    return np.einsum("nip,njp->nij", rows, rows)


def pixel_shares(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's saliency distribution over units ``(N, d, P)``, and where it is defined.

    The ``(N, P)`` mask marks the pixels with non-zero total saliency (elsewhere the shares are 0).
    """
    total = units.sum(axis=1, keepdims=True)
    active = total[:, 0] > 0
    shares = units / np.where(total > 0, total, 1.0)
    return shares, active


def saliency_metrics(saliency: np.ndarray | torch.Tensor) -> dict[str, float]:
    """The five disentanglement metrics of latent-unit saliency maps (module docstring).

    Args:
        saliency: ``(N, d, H, W)``, ``(N, d, C, H, W)`` or any ``(N, d, ...)`` non-negative maps.

    Returns:
        :data:`SALIENCY_METRICS` as floats.
    """
    units = _as_units(saliency)
    d = units.shape[1]
    pooled = units.transpose(1, 0, 2).reshape(d, -1)  # (d, N * P): every example's map
    ranks = rankdata(pooled, axis=-1)  # ties get their average rank, as in scipy.spearmanr
    shares, active = pixel_shares(units)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(shares > 0, shares * np.log(np.where(shares > 0, shares, 1.0)), 0.0)
    entropy = -plogp.sum(axis=1)  # (N, P)
    counts = (shares > 1.0 / d).sum(axis=1)  # (N, P)
    n_active = active.sum()
    support = active.reshape(-1)  # (N * P), in the order of ``pooled``'s columns
    spearman_active = (
        _mean_off_diagonal(correlation(rankdata(pooled[:, support], axis=-1)))
        if n_active
        else float("nan")
    )
    return {
        "pearson": _mean_off_diagonal(correlation(pooled)),
        "spearman": _mean_off_diagonal(correlation(ranks)),
        "spearman_active": spearman_active,
        "cosine": _mean_off_diagonal(cosine(units)),
        "entropy": float(entropy[active].mean()) if n_active else float("nan"),
        "active_units": float(counts[active].mean()) if n_active else float("nan"),
    }
