"""Times ``fit`` epochs in the default and the channels-last memory layout, and how they agree.

Run from the repository root: ``python -m benchmarks.training_layout [--model mnist_ae]``.
Models are the experiments' own (through the model registry) on random images of their
data set's shape, so no data set is needed. Both layouts train from the same initial
weights on exactly the same batches (same seed) in this one process, alternating, after a
short warm-up of each (oneDNN creates its kernels on first use). The last lines give the
speed-up and how far the two layouts' losses drift apart (float rounding only). Nothing
else heavy should run meanwhile: on a shared CPU the numbers mean little.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from lfxai.data.splits import Split
from lfxai.devices import seed_everything
from lfxai.models.registry import ModelSpec, build_model
from lfxai.training import TrainingSettings, fit

LAYOUTS = {"default": False, "channels_last": True}
SHAPES = {"mnist_ae": (1, 28, 28), "mnist_classifier": (1, 28, 28), "burgess_vae": (1, 64, 64)}


def data(shape: tuple[int, ...], n_train: int, n_test: int, seed: int = 0) -> tuple[Split, Split]:
    """Random images in [0, 1] with random labels over 10 classes, on the CPU."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n_train + n_test, *shape, generator=generator)
    y = torch.randint(0, 10, (n_train + n_test,), generator=generator)
    return Split(x[:n_train], y[:n_train]), Split(x[n_train:], y[n_train:])


def epochs(
    model: torch.nn.Module, train: Split, test: Split, channels_last: bool, args: argparse.Namespace
) -> tuple[float, float, list[float]]:
    """Wall and process CPU seconds per epoch of ``fit``, and its test losses."""
    model = copy.deepcopy(model)
    settings = TrainingSettings(
        args.epochs, args.batch_size, patience=0, seed=0, channels_last=channels_last
    )
    seed_everything(0)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = fit(model, train, test, torch.device("cpu"), settings, progress=False)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return wall / args.epochs, cpu / args.epochs, result.test_loss


def training_options(description: str) -> argparse.ArgumentParser:
    """The options of a benchmark that trains a registered model on random images."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default="mnist_ae", choices=sorted(SHAPES))
    parser.add_argument("--n-train", type=int, default=12_000)
    parser.add_argument("--n-test", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser


def model_and_data(args: argparse.Namespace) -> tuple[torch.nn.Module, Split, Split]:
    """Sets torch's threads; the model (seeded) and its random training and test images."""
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = SHAPES[args.model]
    seed_everything(0)
    model = build_model(args.model, ModelSpec(dim_latent=4, input_shape=shape))
    return (model, *data(shape, args.n_train, args.n_test))


def main(argv: list[str] | None = None) -> None:
    """Parses the command line and prints both layouts' epoch times and loss drift."""
    args = training_options(__doc__.splitlines()[0]).parse_args(argv)
    model, train, test = model_and_data(args)
    warm = argparse.Namespace(**{**vars(args), "epochs": 1})
    for flag in LAYOUTS.values():
        epochs(model, train.head(4 * args.batch_size), test.head(300), flag, warm)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in LAYOUTS}
    losses: dict[str, list[float]] = {}
    for repeat in range(args.repeats):
        for name in LAYOUTS if repeat % 2 == 0 else list(LAYOUTS)[::-1]:
            wall, cpu, losses[name] = epochs(model, train, test, LAYOUTS[name], args)
            times[name].append((wall, cpu))
            print(f"repeat {repeat}: {name:<13} {wall:6.2f} s/epoch ({cpu:.2f} s CPU)", flush=True)
    (base, base_cpu), (fast, fast_cpu) = (
        (statistics.median(t[0] for t in times[n]), statistics.median(t[1] for t in times[n]))
        for n in LAYOUTS
    )
    drift = max(
        abs(a - b) / abs(a) for a, b in zip(losses["default"], losses["channels_last"], strict=True)
    )
    print(
        f"\n{args.model}, cpu, {torch.get_num_threads()} threads, {args.n_train} train + "
        f"{args.n_test} test images, batch {args.batch_size}, {args.epochs} epochs, median of "
        f"{args.repeats}:\ndefault {base:.2f} s/epoch | channels_last {fast:.2f} s/epoch | "
        f"{base / fast:.2f}x faster (CPU time {base_cpu:.2f} s vs {fast_cpu:.2f} s)\n"
        f"test losses per epoch agree to a relative {drift:.1e} (float rounding only)"
    )


if __name__ == "__main__":
    main()
