"""The one training loop: early stopping on the test loss, checkpoints for TracIn.

The optimiser, learning rate, weight decay and schedule are settings (``OPTIMIZERS``,
``SCHEDULES``), not literals: the paper's autoencoders use Adam, SimCLR uses SGD with a
cosine schedule and the SCAE RMSprop. :func:`fit` receives them whole, with the epochs,
early stopping, checkpoints, batch size and seed, as one :class:`TrainingSettings`.

Every model trained here exposes ``loss(x, y) -> scalar`` (its own training objective) and
``checkpoints_files`` / ``lr`` attributes that the loop fills when checkpoints are requested.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from lfxai.data.splits import Split

EpochCallback = Callable[[int, dict[str, float]], None]

# name -> (optimizer class, extra keyword arguments); momentum follows the papers' settings.
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict]] = {
    "adam": (torch.optim.Adam, {}),
    "sgd": (torch.optim.SGD, {"momentum": 0.9}),
    "rmsprop": (torch.optim.RMSprop, {"momentum": 0.9}),
}
SCHEDULES = ("constant", "cosine")


def make_optimizer(
    name: str, params, lr: float, weight_decay: float = 0.0, **options
) -> torch.optim.Optimizer:
    """An optimiser by name (see ``OPTIMIZERS``); ``options`` (e.g. ``eps``) are passed on."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid choices: {sorted(OPTIMIZERS)}")
    cls, extra = OPTIMIZERS[name]
    return cls(params, lr=lr, weight_decay=weight_decay, **{**extra, **options})


def make_schedule(
    name: str, optimizer: torch.optim.Optimizer, n_epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """A per-epoch learning-rate schedule by name (``constant`` is None)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown lr_schedule {name!r}; valid choices: {list(SCHEDULES)}")
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(n_epochs, 1))
    return None


@dataclass
class FitResult:
    """What a fit produced: loss histories and where the best epoch was."""

    train_loss: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_test_loss: float = float("inf")
    checkpoints: list[str] = field(default_factory=list)


TrainingData = DataLoader | Split


def on_device(data: TrainingData, device: torch.device) -> TrainingData:
    """A split moved to ``device`` once (it fits); a loader stays as it is."""
    if isinstance(data, Split):
        return Split(data.x.to(device), data.y.to(device))
    return data


def batches(
    data: TrainingData,
    device: torch.device,
    batch_size: int | None,
    generator: torch.Generator | None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """``(x, y)`` batches on ``device``: a loader's, or a split's in ``Split.loader``'s order.

    For a split, ``generator`` shuffles (None keeps the order) and must be seeded like the
    one ``Split.loader(batch_size, shuffle=True, seed=seed)`` gives its DataLoader. The
    DataLoader then draws, per epoch and in this order: its workers' base seed (an int64
    from its generator, or from the global RNG when it has none, even with no workers), the
    epoch's ``randperm(n)`` in ``RandomSampler`` and, once that sampler is exhausted, one
    more ``randperm(n)`` that is sliced to nothing. We draw the same numbers from the same
    generators, so the batches and even the later draws of a pretext's noise from the
    global RNG are the DataLoader's own (``tests/test_training.py`` checks it).
    """
    if not isinstance(data, Split):
        for batch in data:
            x = batch[0].to(device)
            yield x, batch[1].to(device) if len(batch) > 1 else None
        return
    if batch_size is None or batch_size < 1:
        raise ValueError(f"training on a Split needs a positive batch_size, got {batch_size}")
    n = len(data)
    torch.empty((), dtype=torch.int64).random_(generator=generator)  # the base seed
    if generator is None:
        for start in range(0, n, batch_size):
            yield data.x[start : start + batch_size], data.y[start : start + batch_size]
        return
    order = torch.randperm(n, generator=generator)
    torch.randperm(n, generator=generator)  # RandomSampler's trailing, empty draw
    order = order.to(data.x.device)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        yield data.x[index], data.y[index]


def _mean_loss(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]],
    device: torch.device,
    optimizer: torch.optim.Optimizer | None = None,
) -> float:
    """Sample-weighted mean of ``model.loss`` over batches, one optimiser step per batch.

    The sum stays on the device (float64, like the Python floats it replaces) and is read
    once: a ``.item()`` per batch would make the CPU wait for the GPU at every step.
    """
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for x, y in batches:
        loss = model.loss(x, y)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # A model may ask for gradient clipping (the SCAE clips at norm 5).
            max_norm = getattr(model, "max_grad_norm", None)
            if max_norm:
                nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            optimizer.step()
        total += loss.detach().double() * len(x)
        count += len(x)
    return total.item() / max(count, 1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: TrainingData,
    device: torch.device,
    batch_size: int | None = None,
) -> float:
    """Mean of the model's loss over a loader or split (sample-weighted), in eval mode.

    Args:
        model: module with a ``loss(x, y)`` method.
        loader: a DataLoader of ``(x, y)`` batches or a ``Split`` (evaluated in order).
        device: where to compute.
        batch_size: batch size for a split (ignored for a loader).

    Returns:
        The mean loss.
    """
    model.eval()
    data = on_device(loader, device)
    return _mean_loss(model, batches(data, device, batch_size, None), device)


@dataclass(frozen=True)
class TrainingSettings:
    """How :func:`fit` trains, passed whole: one block built once from an experiment's settings.

    An experiment builds it with :meth:`lfxai.config.BaseConfig.training`; a model that
    needs its own training (the SCAE's RMSprop) replaces some members through
    :meth:`lfxai.models.registry.TrainingDefaults.apply`. The checks are those of the loop
    itself (it runs zero epochs or a zero learning rate); an experiment's settings are
    stricter (:meth:`lfxai.config.BaseConfig.validate`).

    Attributes:
        n_epochs: maximum number of epochs.
        batch_size: batch size for ``Split`` data (required when either data is a split).
        lr: learning rate.
        weight_decay: weight decay.
        optimizer: name in ``OPTIMIZERS`` (default Adam, as the paper's autoencoders).
        lr_schedule: name in ``SCHEDULES``, stepped once per epoch.
        patience: epochs without test-loss improvement before stopping (0 disables).
        checkpoint_every: save a state dict every k epochs (0 disables); used by TracIn.
        seed: seed of the shuffling generator of a training split.
        channels_last: on the CPU, train a model with 2-D convolutions in the channels-last
            memory layout (oneDNN's fast path: an MNIST autoencoder step 1.4x faster, see
            ``benchmarks/training_layout.py``); :func:`fit` hands the model back in the
            default layout. Only float rounding differs from the default layout.

    Raises:
        ValueError: a member the loop cannot run, naming it and the valid values.
    """

    n_epochs: int
    batch_size: int | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-5
    optimizer: str = "adam"
    lr_schedule: str = "constant"
    patience: int = 10
    checkpoint_every: int = 0
    seed: int = 0
    channels_last: bool = True

    def __post_init__(self) -> None:
        """Refuses values the loop cannot run (one line naming the value and the choices)."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; valid choices: {sorted(OPTIMIZERS)}"
            )
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(
                f"unknown lr_schedule {self.lr_schedule!r}; valid choices: {list(SCHEDULES)}"
            )
        for name in ("n_epochs", "patience", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size}")
        if not self.lr >= 0:  # also refuses NaN
            raise ValueError(f"lr must be >= 0, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


def fit(
    model: nn.Module,
    train_data: TrainingData,
    test_data: TrainingData,
    device: torch.device,
    settings: TrainingSettings,
    *,
    checkpoint_dir: Path | None = None,
    on_epoch: EpochCallback | None = None,
    progress: bool = True,
) -> FitResult:
    """Trains ``model`` with early stopping; restores the best weights.

    The data are DataLoaders or ``Split``s. A split is moved to the device once and
    batched by slicing a per-epoch permutation there, with no per-example Python work;
    with ``settings.batch_size`` and ``settings.seed`` equal to those of
    ``Split.loader(batch_size, shuffle=True, seed=seed)`` it trains on exactly the same
    batches as that loader.

    Args:
        model: module with a ``loss(x, y)`` method.
        train_data: a DataLoader of ``(x, y)`` training batches, or a ``Split``
            (reshuffled every epoch).
        test_data: a DataLoader or ``Split`` (in order) for early stopping.
        device: where to train.
        settings: the optimiser, epochs, early stopping, checkpoints, batch size and seed.
        checkpoint_dir: where checkpoints go (required when ``settings.checkpoint_every >
            0``). Checkpoints hold CPU tensors, so a machine without a GPU can load them.
        on_epoch: called as ``on_epoch(epoch, {"train_loss": .., "test_loss": ..})``.
        progress: show a tqdm bar over epochs.

    Returns:
        The loss histories, the best epoch and the checkpoint files written.
    """
    every = settings.checkpoint_every
    if every > 0 and checkpoint_dir is None:
        raise ValueError("checkpoint_every > 0 needs a checkpoint_dir")
    batch_size = settings.batch_size
    model.to(device)
    # Trained channels-last on the CPU; what comes next (attribution, export, saving) sees
    # the usual layout again, also when training raises.
    layout = channels_last_on_cpu(model, device) if settings.channels_last else nullcontext()
    with layout:
        train_data, test_data = on_device(train_data, device), on_device(test_data, device)
        # Created once, like the generator Split.loader hands its DataLoader.
        split = isinstance(train_data, Split)
        shuffle = torch.Generator().manual_seed(settings.seed) if split else None
        # A model may add optimiser options of its own (the SCAE's RMSprop eps).
        options = getattr(model, "optimizer_options", {})
        opt = make_optimizer(
            settings.optimizer, model.parameters(), settings.lr, settings.weight_decay, **options
        )
        schedule = make_schedule(settings.lr_schedule, opt, settings.n_epochs)
        result = FitResult()
        best_state = copy.deepcopy(model.state_dict())
        stale = 0
        bar = tqdm(
            range(settings.n_epochs),
            desc=f"train {getattr(model, 'name', 'model')}",
            disable=not progress,
        )
        for epoch in bar:
            model.train()
            epoch_batches = batches(train_data, device, batch_size, shuffle)
            train_loss = _mean_loss(model, epoch_batches, device, opt)
            if schedule is not None:
                schedule.step()
            test_loss = evaluate(model, test_data, device, batch_size)
            result.train_loss.append(train_loss)
            result.test_loss.append(test_loss)
            bar.set_postfix(train=f"{train_loss:.4g}", test=f"{test_loss:.4g}")
            if on_epoch is not None:
                on_epoch(epoch, {"train_loss": train_loss, "test_loss": test_loss})
            if every > 0 and (epoch + 1) % every == 0:
                assert checkpoint_dir is not None
                checkpoint_dir.mkdir(parents=True, exist_ok=True)
                path = (
                    checkpoint_dir / f"{getattr(model, 'name', 'model')}_checkpoint_{epoch + 1}.pt"
                )
                torch.save(cpu_state_dict(model), path)
                result.checkpoints.append(str(path))
            if test_loss < result.best_test_loss:
                result.best_test_loss, result.best_epoch = test_loss, epoch
                best_state = copy.deepcopy(model.state_dict())
                stale = 0
            else:
                stale += 1
                if settings.patience and stale >= settings.patience:
                    break
        model.load_state_dict(best_state)
    model.eval()
    if hasattr(model, "checkpoints_files"):
        model.checkpoints_files = list(result.checkpoints)
        model.lr = settings.lr
    return result


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached CPU copies of the model's state, in the default memory layout.

    The model itself stays where it is; a checkpoint written while :func:`fit` trains in
    the channels-last layout loads like any other.
    """
    return {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}


@contextmanager
def channels_last_on_cpu(model: nn.Module, device: torch.device) -> Iterator[bool]:
    """While the block runs, a CPU model with 2-D convolutions is in the channels-last layout.

    Gradients through it come faster too: label-free IntegratedGradients of the MNIST
    encoder, 1.6x (3,000 images, 2 threads; only float rounding differs, ~4e-7). Afterwards
    the model is back in the default layout, also if the block raises. Yields whether it
    was converted.
    """
    converted = _channels_last(model, device)
    try:
        yield converted
    finally:
        if converted:
            model.to(memory_format=torch.contiguous_format)


def _channels_last(model: nn.Module, device: torch.device) -> bool:
    """Puts a CPU model with 2-D convolutions in the channels-last layout; True if it did.

    oneDNN's CPU convolutions and batch norms run faster on NHWC data; a layer's output
    follows its weights' layout, so the inputs need no conversion. On a GPU the gain
    depends on the card and precision, so the layout is left alone there.
    """
    convolutions = (nn.Conv2d, nn.ConvTranspose2d)
    if device.type != "cpu" or not any(isinstance(m, convolutions) for m in model.modules()):
        return False
    model.to(memory_format=torch.channels_last)
    return True
