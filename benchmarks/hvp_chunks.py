"""Times LiSSA's recursion steps at several ``hvp_chunk_size`` values, in one process.

Run from the repository root: ``python -m benchmarks.hvp_chunks --chunks 8 50``. The model is
the MNIST autoencoder (d=4, random init; the cost of a product does not depend on the weights)
on ``--n`` random 28x28 training examples, LiSSA's paper settings otherwise (batches of
``--batch`` resampled examples, the Hessian split at the code). For each chunk size, the
explainer runs once with no recursion step (the gradients) and once with ``--steps`` steps;
their difference over ``--steps`` is the time of one step, extrapolated to depth 100. The
sizes are timed in turn, ``--repeats`` times, so that a change of load hits every size alike.
The last column is each size's largest score difference from the first size's, relative to
its largest score (the chunks compute the same products; only float rounding may differ).
"""

from __future__ import annotations

import argparse
import os

import torch

from benchmarks.example_explainers import LISSA_DEPTH, measure
from lfxai.explanations.examples import InfluenceFunctions
from lfxai.models.images import AutoEncoderMnist, DecoderMnist, EncoderMnist


def lissa_step(model, x_train, x_test, chunk: int, args) -> tuple[float, float, torch.Tensor]:
    """(wall seconds, CPU seconds) of one recursion step at ``chunk``, and the scores."""
    device = x_train.device

    def timed(depth: int):
        explainer = InfluenceFunctions(
            model,
            progress=False,
            recursion_depth=depth,
            hvp_batch_size=args.batch,
            hvp_chunk_size=chunk,
        )
        return measure(
            lambda: explainer.attribute_loader(device, [(x_train,)], [(x_test,)]), device
        )

    grads_s, grads_cpu, _, _ = timed(0)
    lissa_s, lissa_cpu, _, scores = timed(args.steps)
    return (lissa_s - grads_s) / args.steps, (lissa_cpu - grads_cpu) / args.steps, scores


def main(argv: list[str] | None = None) -> list[dict]:
    """Parses the command line, prints one row per chunk size and repeat and returns them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[8, 50])
    parser.add_argument("--n", type=int, default=1000, help="explained train (and test) examples")
    parser.add_argument("--batch", type=int, default=200, help="examples per HVP batch")
    parser.add_argument("--steps", type=int, default=2, help="timed recursion steps")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = AutoEncoderMnist(EncoderMnist(4), DecoderMnist(4), 4).eval()
    x_train, x_test = torch.rand(args.n, 1, 28, 28), torch.rand(args.n, 1, 28, 28)
    print(f"threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}", flush=True)
    small = argparse.Namespace(**{**vars(args), "steps": 1})
    lissa_step(model, x_train[:64], x_test[:8], args.chunks[0], small)  # oneDNN kernels
    rows, first = [], None
    for repeat in range(args.repeats):
        for chunk in args.chunks:
            step_s, step_cpu, scores = lissa_step(model, x_train, x_test, chunk, args)
            first = scores if first is None else first
            error = ((scores - first).abs().max() / first.abs().max()).item()
            rows.append({"chunk": chunk, "step_s": step_s, "cpu_s": step_cpu, "error": error})
            print(
                f"repeat {repeat} | chunk {chunk:>4} ({chunk * args.batch:>6} tangents) | step"
                f" {step_s:6.2f} s (CPU {step_cpu:6.2f} s) | depth {LISSA_DEPTH}:"
                f" {LISSA_DEPTH * step_s / 60:5.1f} min | max rel. score difference {error:.1e}",
                flush=True,
            )
    best = {c: min(r["step_s"] for r in rows if r["chunk"] == c) for c in args.chunks}
    base = best[args.chunks[-1]]
    for chunk in args.chunks:
        print(
            f"chunk {chunk}: best step {best[chunk]:.2f} s, x{base / best[chunk]:.2f} "
            f"against chunk {args.chunks[-1]}"
        )
    print(f"load {os.getloadavg()[0]:.2f}")
    return rows


if __name__ == "__main__":
    main()
