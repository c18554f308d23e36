"""Times one MNIST autoencoder epoch of ``fit``: DataLoaders against device-resident Splits.

Run from the repository root: ``python -m benchmarks.training_loader [--device cuda]``.
The model is the MNIST autoencoder of the experiments (d=4, Gaussian-noise pretext) on
random 1x28x28 images, so no dataset is needed. Both paths train on exactly the same batches
(same seed), evaluate the same test images and run in this one process, alternating, after a
short warm-up of each (oneDNN and cuDNN create their kernels on first use). Nothing else heavy
should run meanwhile: on a shared CPU the numbers mean little.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lfxai.data.splits import Split
from lfxai.devices import get_device, seed_everything
from lfxai.models.images import AutoEncoderMnist, DecoderMnist, EncoderMnist
from lfxai.models.pretext import GaussianNoise
from lfxai.training import TrainingSettings, fit

PATHS = ("dataloader", "split")


def data(n_train: int, n_test: int, seed: int = 0) -> tuple[Split, Split]:
    """Random images in [0, 1] with dummy labels, on the CPU (as the data sets load them)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n_train + n_test, 1, 28, 28, generator=generator)
    y = torch.zeros(n_train + n_test, dtype=torch.long)
    return Split(x[:n_train], y[:n_train]), Split(x[n_train:], y[n_train:])


def epoch_seconds(
    path: str, train: Split, test: Split, device: torch.device, batch_size: int, seed: int = 0
) -> float:
    """Wall-clock seconds of one ``fit`` epoch (training and test evaluation)."""
    return epoch_times(path, train, test, device, batch_size, seed)[0]


def epoch_times(
    path: str, train: Split, test: Split, device: torch.device, batch_size: int, seed: int = 0
) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one ``fit`` epoch (training and evaluation).

    The CPU time counts this process's work only, so other jobs on a shared machine inflate
    it much less than the wall clock (with one thread; several threads spin while waiting).
    """
    seed_everything(seed)
    model = AutoEncoderMnist(EncoderMnist(4), DecoderMnist(4), 4, GaussianNoise())
    if path == "dataloader":
        loaders = (train.loader(batch_size, shuffle=True, seed=seed), test.loader(batch_size))
    else:
        loaders = (train, test)
    _synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    fit(model, *loaders, device, TrainingSettings(1, batch_size, seed=seed), progress=False)
    _synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu_start


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    """Epoch times of both data paths, ``args.repeats`` times, after a warm-up."""
    device = get_device(args.device)
    train, test = data(args.n_train, args.n_test)
    for path in PATHS:  # warm-up
        epoch_times(path, train.head(4 * args.batch_size), test.head(300), device, args.batch_size)
    times: dict[str, list[tuple[float, float]]] = {path: [] for path in PATHS}
    for repeat in range(args.repeats):
        for path in PATHS if repeat % 2 == 0 else PATHS[::-1]:
            wall, cpu = epoch_times(path, train, test, device, args.batch_size)
            times[path].append((wall, cpu))
            print(f"repeat {repeat}: {path:<10} {wall:7.2f} s/epoch ({cpu:.2f} s CPU)", flush=True)
    return times


def main(argv: list[str] | None = None) -> None:
    """Parses the command line and prints the epoch times of both paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--n-train", type=int, default=60_000)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    times = run(args)
    (loader_s, loader_cpu), (split_s, split_cpu) = (
        (statistics.median(t[0] for t in times[path]), statistics.median(t[1] for t in times[path]))
        for path in PATHS
    )
    print(
        f"\n{get_device(args.device)}, {torch.get_num_threads()} threads, {args.n_train} train "
        f"+ {args.n_test} test images, batch {args.batch_size}, median of {args.repeats}:\n"
        f"DataLoader {loader_s:.2f} s/epoch | Split {split_s:.2f} s/epoch | "
        f"Split is {loader_s / split_s:.2f}x faster "
        f"(CPU time {loader_cpu:.2f} s vs {split_cpu:.2f} s: {loader_cpu / split_cpu:.2f}x)"
    )


if __name__ == "__main__":
    main()
