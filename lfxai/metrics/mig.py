"""Mutual information gap (MIG): how well single latent units capture single true factors.

For each factor ``v_k``, the two latent units with the highest mutual information with it are
found; MIG is the mean over factors of the gap between them, normalised by ``H(v_k)``: 1 when
each factor is carried by exactly one unit (and no other unit knows it), 0 when no unit stands
out. Latent codes are discretised into equal-width bins per unit, as in Locatello et al.'s
disentanglement_lib; all mutual informations come from one joint histogram (one bincount).

References:
    Chen, Li, Grosse, Duvenaud. Isolating Sources of Disentanglement in VAEs. NeurIPS 2018.
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_BINS = 20


def discretise(codes: np.ndarray, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """Equal-width bins per column of ``codes`` ``(n, d)``: int64 bin indices ``0..n_bins-1``.

    A constant column falls into bin 0.
    """
    codes = np.asarray(codes, dtype=np.float64)
    low, high = codes.min(axis=0), codes.max(axis=0)
    width = np.where(high > low, (high - low) / n_bins, 1.0)
    return np.clip(((codes - low) / width).astype(np.int64), 0, n_bins - 1)


def _labels(values: np.ndarray) -> np.ndarray:
    """Each column's values replaced by their rank among the column's distinct values."""
    values = np.asarray(values)
    if values.ndim == 1:
        values = values[:, None]
    ranks = [np.unique(column, return_inverse=True)[1].ravel() for column in values.T]
    return np.stack(ranks, axis=1).astype(np.int64)


def entropy(labels: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each column of discrete ``labels`` ``(n, K)``: ``(K,)``."""
    labels = _labels(labels)
    n, k = labels.shape
    size = int(labels.max(initial=0)) + 1
    counts = np.bincount((np.arange(k) * size + labels).ravel(), minlength=k * size)
    p = counts.reshape(k, size) / n
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)


def mutual_information(codes_binned: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Mutual information (nats) of every discrete code column with every factor column.

    Args:
        codes_binned: ``(n, d)`` discrete codes (e.g. from :func:`discretise`).
        factors: ``(n, K)`` discrete factors (any values; each column's distinct values are
            its classes).

    Returns:
        ``(d, K)`` mutual informations ``I(z_j; v_k)``.
    """
    z, v = _labels(codes_binned), _labels(factors)
    n, d = z.shape
    k = v.shape[1]
    if len(v) != n:
        raise ValueError(f"{n} codes but {len(v)} factor rows")
    nz, nv = int(z.max(initial=0)) + 1, int(v.max(initial=0)) + 1
    # One flat index per (unit j, factor k, code bin, factor class) and example.
    pair = (np.arange(d)[:, None] * k + np.arange(k)[None, :])[None]  # (1, d, K)
    flat = (pair * nz + z[:, :, None]) * nv + v[:, None, :]  # (n, d, K)
    joint = np.bincount(flat.ravel(), minlength=d * k * nz * nv).reshape(d, k, nz, nv) / n
    pz = joint.sum(axis=3, keepdims=True)
    pv = joint.sum(axis=2, keepdims=True)
    ratio = np.where(joint > 0, joint / np.where(pz * pv > 0, pz * pv, 1.0), 1.0)
    return (joint * np.log(ratio)).sum(axis=(2, 3))


def mutual_information_gap(
    codes: np.ndarray | torch.Tensor,
    factors: np.ndarray | torch.Tensor,
    n_bins: int = DEFAULT_BINS,
) -> dict[str, float | np.ndarray]:
    """MIG of continuous codes (e.g. encoder means) against discrete true factors.

    Args:
        codes: ``(n, d)`` latent codes, ``d >= 2``.
        factors: ``(n, K)`` factor classes; constant factors (zero entropy) are skipped.
        n_bins: equal-width bins per latent unit.

    Returns:
        ``mig`` (mean gap over the non-constant factors), ``gaps`` ``(K,)`` per factor
        (NaN for a constant one) and ``mutual_information`` ``(d, K)`` in nats.
    """
    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    if isinstance(factors, torch.Tensor):
        factors = factors.detach().cpu().numpy()
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] < 2:
        raise ValueError(f"MIG needs codes (n, d) with d >= 2, got {codes.shape}")
    info = mutual_information(discretise(codes, n_bins), factors)
    h = entropy(factors)
    top = -np.sort(-info, axis=0)
    varies = h > 0
    gaps = np.full(len(h), np.nan)
    gaps[varies] = (top[0, varies] - top[1, varies]) / h[varies]
    mig = float(gaps[varies].mean()) if varies.any() else float("nan")
    return {"mig": mig, "gaps": gaps, "mutual_information": info}
