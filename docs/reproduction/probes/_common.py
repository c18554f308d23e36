"""Shared helpers of the divergence probes: the ECG5000 model cache and its explained subsets.

Run the probes from the repository root with ``PYTHONPATH=.`` and one thread
(``OMP_NUM_THREADS=1``); they read the data under ``data/`` (``python -m lfxai.data provision
ecg5000`` / ``mnist``). Nothing is logged to MLflow: they print their numbers.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lfxai.data.splits import Split
from lfxai.experiments.consistency_examples import balanced_subset
from lfxai.metrics.consistency import similarity_rates
from lfxai.models.autoencoder import TrainableModel
from lfxai.plugins.base import Splits, get_dataset

PERCENTAGES = [5, 10, 20, 50]


def ecg_splits(n_train: int, n_test: int, seed: int) -> Splits:
    """The random 4,000 / 1,000 split cut to ``n_train`` / ``n_test`` beats, as the profiles do."""
    return get_dataset("ecg5000").load("data", "random", seed, n_train, n_test)


def ecg_model(dim: int, splits: Splits, cache: Path | None = None) -> TrainableModel:
    """A fresh LSTM autoencoder, or the best weights cached by ``ecg_train.py``, in eval mode."""
    shape = splits.train.x.shape[1:]
    model = get_dataset("ecg5000").build_model(dim, shape, "reconstruction", "ae")
    if cache is not None:
        model.load_state_dict(torch.load(cache / "best.pt", weights_only=True))
    return model.eval()


def explained(splits: Splits, n: int, seed: int) -> tuple[Split, Split]:
    """``n`` class-balanced train beats and ``n`` random test beats, as consistency_examples."""
    generator = torch.Generator().manual_seed(seed)
    train_idx = balanced_subset(splits.train.y, n, generator)
    test_idx = torch.randperm(len(splits.explain.y), generator=generator)[:n]
    return splits.train.subset(train_idx), splits.explain.subset(test_idx)


def print_rates(scores: torch.Tensor, train: Split, test: Split, name: str) -> None:
    """Top / bottom similarity rates at 5, 10, 20 and 50 %."""
    rates = similarity_rates(scores, test.y, train.y, PERCENTAGES)
    top = " ".join(f"{v:.3f}" for v in rates["top"])
    bottom = " ".join(f"{v:.3f}" for v in rates["bottom"])
    print(f"{name:55s} top {top} | bottom {bottom}", flush=True)
