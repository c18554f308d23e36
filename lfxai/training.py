"""The one training loop: early stopping on the test loss, checkpoints for TracIn.

The optimiser, learning rate, weight decay and schedule are settings (``OPTIMIZERS``,
``SCHEDULES``), not literals: the paper's autoencoders use Adam, SimCLR uses SGD with a
cosine schedule and the SCAE RMSprop.

Every model trained here exposes ``loss(x, y) -> scalar`` (its own training objective) and
``checkpoints_files`` / ``lr`` attributes that the loop fills when checkpoints are requested.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

EpochCallback = Callable[[int, dict[str, float]], None]

# name -> (optimizer class, extra keyword arguments); momentum follows the papers' settings.
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict]] = {
    "adam": (torch.optim.Adam, {}),
    "sgd": (torch.optim.SGD, {"momentum": 0.9}),
    "rmsprop": (torch.optim.RMSprop, {"momentum": 0.9}),
}
SCHEDULES = ("constant", "cosine")


def make_optimizer(
    name: str, params, lr: float, weight_decay: float = 0.0
) -> torch.optim.Optimizer:
    """An optimiser by name (see ``OPTIMIZERS``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid choices: {sorted(OPTIMIZERS)}")
    cls, extra = OPTIMIZERS[name]
    return cls(params, lr=lr, weight_decay=weight_decay, **extra)


def make_schedule(
    name: str, optimizer: torch.optim.Optimizer, n_epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-epoch learning-rate schedule by name (``constant`` is None)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown lr_schedule {name!r}; valid choices: {list(SCHEDULES)}")
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(n_epochs, 1))
    return None


def seed_everything(seed: int) -> torch.Generator:
    """Seeds Python, NumPy and torch (CPU and CUDA); returns a seeded CPU generator."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def get_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class FitResult:
    """What a fit produced: loss histories and where the best epoch was."""

    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_test_loss: float = float("inf")
    checkpoints: list[str] = field(default_factory=list)


def _batch_loss(model: nn.Module, batch, device: torch.device) -> tuple[torch.Tensor, int]:
    x, y = batch[0].to(device), batch[1].to(device) if len(batch) > 1 else None
    return model.loss(x, y), len(x)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    """Mean of the model's loss over a loader (sample-weighted), in eval mode."""
    model.eval()
    total, count = 0.0, 0
    for batch in loader:
        loss, n = _batch_loss(model, batch, device)
        total += loss.item() * n
        count += n
    return total / max(count, 1)


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    test_loader: DataLoader,
    device: torch.device,
    n_epochs: int,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    optimizer: str = "adam",
    lr_schedule: str = "constant",
    patience: int = 10,
    checkpoint_every: int = 0,
    checkpoint_dir: Path | None = None,
    on_epoch: EpochCallback | None = None,
    progress: bool = True,
) -> FitResult:
    """Trains ``model`` with early stopping; restores the best weights.

    Args:
        model: module with a ``loss(x, y)`` method.
        train_loader: yields ``(x, y)`` batches for training.
        test_loader: yields ``(x, y)`` batches for early stopping.
        device: where to train.
        n_epochs: maximum number of epochs.
        lr: learning rate.
        weight_decay: weight decay.
        optimizer: name in ``OPTIMIZERS`` (default Adam, as the paper's autoencoders).
        lr_schedule: name in ``SCHEDULES``, stepped once per epoch.
        patience: epochs without test-loss improvement before stopping (0 disables).
        checkpoint_every: save a state dict every k epochs (0 disables); used by TracIn.
        checkpoint_dir: where checkpoints go (required when ``checkpoint_every > 0``).
        on_epoch: called as ``on_epoch(epoch, {"train_loss": .., "test_loss": ..})``.
        progress: show a tqdm bar over epochs.

    Returns:
        The loss histories, the best epoch and the checkpoint files written.
    """
    if checkpoint_every > 0 and checkpoint_dir is None:
        raise ValueError("checkpoint_every > 0 needs a checkpoint_dir")
    model.to(device)
    opt = make_optimizer(optimizer, model.parameters(), lr, weight_decay)
    schedule = make_schedule(lr_schedule, opt, n_epochs)
    result = FitResult()
    best_state = copy.deepcopy(model.state_dict())
    stale = 0
    bar = tqdm(
        range(n_epochs), desc=f"train {getattr(model, 'name', 'model')}", disable=not progress
    )
    for epoch in bar:
        model.train()
        total, count = 0.0, 0
        for batch in train_loader:
            loss, n = _batch_loss(model, batch, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * n
            count += n
        train_loss = total / max(count, 1)
        if schedule is not None:
            schedule.step()
        test_loss = evaluate(model, test_loader, device)
        result.train_loss.append(train_loss)
        result.test_loss.append(test_loss)
        bar.set_postfix(train=f"{train_loss:.4g}", test=f"{test_loss:.4g}")
        if on_epoch is not None:
            on_epoch(epoch, {"train_loss": train_loss, "test_loss": test_loss})
        if checkpoint_every > 0 and (epoch + 1) % checkpoint_every == 0:
            assert checkpoint_dir is not None
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
            path = checkpoint_dir / f"{getattr(model, 'name', 'model')}_checkpoint_{epoch + 1}.pt"
            torch.save(model.state_dict(), path)
            result.checkpoints.append(str(path))
        if test_loss < result.best_test_loss:
            result.best_test_loss, result.best_epoch = test_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
            stale = 0
        else:
            stale += 1
            if patience and stale >= patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    if hasattr(model, "checkpoints_files"):
        model.checkpoints_files = list(result.checkpoints)
        model.lr = lr
    return result
