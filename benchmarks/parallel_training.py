"""Times ``fit`` of several models one after the other against ``CpuWorkers`` running them at once.

Run from the repository root: ``python -m benchmarks.parallel_training [--models 2]``.
Both ways train the same models (the experiments' own, through the model registry) from
the same initial weights on the same random images of their data set's shape, in this one
process, alternating, after a short warm-up: one after the other with all of torch's
threads, or ``--workers`` at a time sharing them (what ``roar_test``'s
``retraining_workers`` does). The last lines give the speed-up and how far the two ways'
test losses drift apart (the thread count changes float rounding only). Nothing else
heavy should run meanwhile: on a shared CPU the numbers mean little.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch

from benchmarks.training_layout import model_and_data, training_options
from lfxai.concurrency import CpuWorkers
from lfxai.data.splits import Split
from lfxai.training import TrainingSettings, fit


def trainings(
    model: torch.nn.Module, train: Split, test: Split, args: argparse.Namespace
) -> list[Callable[[], list[float]]]:
    """``args.models`` jobs, each training a copy of ``model`` and returning its test losses."""
    settings = TrainingSettings(args.epochs, args.batch_size, patience=0, seed=0)

    def job() -> list[float]:
        copied = copy.deepcopy(model)
        return fit(copied, train, test, torch.device("cpu"), settings, progress=False).test_loss

    return [job for _ in range(args.models)]


def timed(workers: int, jobs: list[Callable[[], list[float]]]) -> tuple[float, float, list]:
    """Wall and process CPU seconds of running ``jobs`` ``workers`` at a time, and results."""
    start, cpu_start = time.perf_counter(), time.process_time()
    results = CpuWorkers(workers).run(jobs)
    return time.perf_counter() - start, time.process_time() - cpu_start, results


def main(argv: list[str] | None = None) -> None:
    """Parses the command line and prints both ways' times and loss drift."""
    parser = training_options(__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=2, help="models trained per repeat")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    model, train, test = model_and_data(args)
    ways = {"one after the other": 1, f"{args.workers} at a time": args.workers}
    warm = argparse.Namespace(**{**vars(args), "epochs": 1})
    for workers in ways.values():  # oneDNN creates its kernels on first use, per thread count
        timed(workers, trainings(model, train.head(4 * args.batch_size), test.head(300), warm))
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
    losses: dict[str, list] = {}
    for repeat in range(args.repeats):
        for name in ways if repeat % 2 == 0 else list(ways)[::-1]:
            wall, cpu, losses[name] = timed(ways[name], trainings(model, train, test, args))
            times[name].append((wall, cpu))
            print(f"repeat {repeat}: {name:<20} {wall:6.2f} s ({cpu:.2f} s CPU)", flush=True)
    (base, base_cpu), (fast, fast_cpu) = (
        (statistics.median(t[0] for t in times[n]), statistics.median(t[1] for t in times[n]))
        for n in ways
    )
    first, second = (
        [loss for run in losses[name] for loss in run] for name in ways
    )  # every model's test loss per epoch
    drift = max(abs(a - b) / abs(a) for a, b in zip(first, second, strict=True))
    print(
        f"\n{args.models} x {args.model}, cpu, {torch.get_num_threads()} threads, "
        f"{args.n_train} train + {args.n_test} test images, batch {args.batch_size}, "
        f"{args.epochs} epochs, median of {args.repeats}:\n"
        f"one after the other {base:.2f} s | {args.workers} at a time {fast:.2f} s | "
        f"{base / fast:.2f}x faster (CPU time {base_cpu:.2f} s vs {fast_cpu:.2f} s)\n"
        f"test losses per epoch agree to a relative {drift:.1e} (float rounding only)"
    )


if __name__ == "__main__":
    main()
