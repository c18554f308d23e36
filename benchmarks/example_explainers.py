"""Times the example explainers against in-memory per-example loops (the reference's way).

Run from the repository root: ``python -m benchmarks.example_explainers --sizes 100 1000``.
The model is the MNIST autoencoder (d=4, random init; checkpoints are random perturbations
of it, held in memory) on random 28x28 inputs, so no dataset is needed; ``--model lstm`` takes
the ECG5000 LSTM autoencoder instead (d=64, 140 steps, L1 loss; e.g. ``--model lstm --sizes
1000 --checkpoints 15``). For each size n (n train x n test examples):

- TracIn over ``--checkpoints`` checkpoints vs a loop of one backward per example and
  checkpoint, then Python loops over pairs for the dot products;
- SimplEx vs the reference's optimisation (autograd + Adam, batches of 50 test examples);
- DkNN vs a loop over test examples;
- influence functions: Arnoldi (timed in full) and LiSSA (``--lissa-steps`` recursion steps
  timed, extrapolated to depth 100), with the time per Hessian-vector product compared with
  the reference's one-vector-at-a-time products (about 30 ms each on the reference's machine);
  LiSSA twice, with the Hessian split at the code (``code_hvp``, used from 64 vectors on) and
  with the generic product, for their ratio in one process.
  For the LSTM, Arnoldi's Hessian uses ``--hessian-size`` examples (the ECG5000 paper
  profile's 200) and LiSSA is not timed: 100 products with n vectors each through 140 LSTM
  steps are out of reach on a CPU (the reason the ECG5000 profiles use Arnoldi);
- for the LSTM, TracIn's per-example gradients are also timed through ``vmap`` over the fused
  kernel (the generic path, which the LSTM path of ``recurrent.py`` replaces) on
  ``--vmap-examples`` examples, per example.

Every row has the wall time and the CPU time (user + system, all threads; on a shared machine
the wall time mostly measures the load, printed before and after). Naive baselines are skipped
above ``--skip-naive-above``. Peak memory is the process's peak
resident set size during the call (VmHWM, reset before each call; Linux; it includes the
~0.7 GB of the torch libraries, and freed memory that the allocator reuses is not counted
twice), or CUDA's peak allocation.

References:
    Crabbé & van der Schaar. Label-Free Explainability for Unsupervised Models. ICML 2022.
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from lfxai.explanations.examples import (
    DKNN,
    InfluenceFunctions,
    SimplEx,
    TracIn,
    code_hvp,
    per_sample_grads,
)
from lfxai.explanations.examples.per_sample_grads import LossFunctional
from lfxai.models.images import AutoEncoderMnist, DecoderMnist, EncoderMnist
from lfxai.models.time_series import RecurrentAutoencoder

LISSA_DEPTH, REFERENCE_HVP_MS, HVP_BATCH = 100, 30.0, 200


def _status_mb(field: str) -> float:
    status = Path("/proc/self/status")
    if not status.exists():
        return float("nan")
    for line in status.read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(fn: Callable[[], object], device: torch.device) -> tuple[float, float, float, object]:
    """(wall seconds, CPU seconds, peak memory of the process during the call in MB, result).

    On a shared machine the wall time grows with the load; the CPU time (user + system, all
    threads) much less, so both are reported.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    elif Path("/proc/self/clear_refs").exists():
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    start, cpu = time.perf_counter(), _cpu_seconds()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = _status_mb("VmHWM")
    return time.perf_counter() - start, _cpu_seconds() - cpu, peak, out


# Naive, reference-style baselines -------------------------------------------------------------


def naive_grads(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Per-example gradients of the loss over the encoder, one backward each, as the reference."""
    params = list(model.encoder.parameters())
    out = []
    for i in range(len(x)):  # one backward per example
        loss = model.loss(x[i : i + 1])
        out.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    return out


def naive_tracin(model, states, x_train, x_test, lr) -> torch.Tensor:
    """TracIn by Python loops over checkpoints and pairs, as the reference computed it."""
    scores = torch.zeros(len(x_test), len(x_train))
    for state in states:
        ref = copy.deepcopy(model)
        ref.load_state_dict(state)
        g_train, g_test = naive_grads(ref, x_train), naive_grads(ref, x_test)
        for i, g in enumerate(g_test):  # Python loops over pairs, as the reference
            for j, h in enumerate(g_train):
                scores[i, j] += lr * torch.dot(g, h).item()
    return scores


def naive_simplex(model, x_train, x_test, n_epoch: int = 1000) -> torch.Tensor:
    """SimplEx by the reference's loop: batches of 50 test examples, softmax weights, Adam."""
    with torch.no_grad():
        h_train, h_test = model.encoder(x_train), model.encoder(x_test)
    rows = []
    for i in range(0, len(h_test), 50):  # the reference's batches of 50 test examples
        logits = torch.zeros(
            len(h_test[i : i + 50]), len(h_train), device=h_train.device, requires_grad=True
        )
        optimizer = torch.optim.Adam([logits])
        for _ in range(n_epoch):
            optimizer.zero_grad()
            error = ((torch.softmax(logits, -1) @ h_train - h_test[i : i + 50]) ** 2).sum()
            error.backward()
            optimizer.step()
        rows.append(torch.softmax(logits, -1).detach())
    return torch.cat(rows)


def naive_dknn(model, x_train, x_test) -> torch.Tensor:
    """DkNN's inverse squared distances, one test example at a time."""
    with torch.no_grad():
        h_train, h_test = model.encoder(x_train), model.encoder(x_test)
    return torch.stack([1 / ((h - h_train) ** 2).sum(-1) for h in h_test])  # loop over examples


def naive_hvp_ms(model, x_pool, n_hvp: int = 5) -> float:
    """Mean time of the reference's HVP: fresh forward + double backward for one vector."""
    params = list(model.encoder.parameters())
    v = torch.randn(sum(p.numel() for p in params), device=x_pool.device)
    for k in range(n_hvp + 1):
        if k == 1:  # the first product (kernel creation) is not timed
            _synchronize(x_pool.device)
            start = time.perf_counter()
        xb = x_pool[torch.randint(len(x_pool), (HVP_BATCH,))]
        grads = torch.autograd.grad(model.loss(xb), params, create_graph=True)
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.autograd.grad(flat @ v, params)
    _synchronize(x_pool.device)
    return 1000 * (time.perf_counter() - start) / n_hvp


def _synchronize(device: torch.device) -> None:
    """Waits for queued GPU work, so that wall-clock times cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# Driver -------------------------------------------------------------------------------------


def checkpoints(model: nn.Module, count: int) -> list[dict[str, torch.Tensor]]:
    """In-memory "checkpoints": small random perturbations of the model's weights."""
    states = []
    for _ in range(count):
        state = copy.deepcopy(model.state_dict())
        for key, value in state.items():
            if value.is_floating_point() and "running" not in key:
                value.add_(0.01 * torch.randn_like(value))
        states.append(state)
    return states


def bench_size(n: int, model: nn.Module, states: list, args: argparse.Namespace) -> list[dict]:
    """One row per explainer at n train x n test examples."""
    device = torch.device(args.device)
    shape = (140, 1) if args.model == "lstm" else (1, 28, 28)
    x_train = torch.rand(n, *shape, device=device)
    x_test = torch.rand(n, *shape, device=device)

    def ours(cls, **opts):
        explainer = cls(model, progress=False, **opts)  # the model's own training loss
        return measure(
            lambda: explainer.attribute_loader(device, [(x_train,)], [(x_test,)]), device
        )

    jobs = {
        "TracIn": (
            lambda: ours(TracIn, checkpoints=states),
            lambda: naive_tracin(model, states, x_train, x_test, model.lr),
        ),
        "SimplEx": (lambda: ours(SimplEx), lambda: naive_simplex(model, x_train, x_test)),
        "DkNN": (lambda: ours(DKNN), lambda: naive_dknn(model, x_train, x_test)),
        "IF-Arnoldi": (
            lambda: ours(
                InfluenceFunctions,
                influence_method="arnoldi",
                arnoldi_iter=args.arnoldi_iter,
                arnoldi_rank=args.rank,
                hessian_size=args.hessian_size,
                hvp_batch_size=args.hvp_batch_size,
            ),
            None,
        ),
    }
    if args.model == "lstm":
        jobs["TracIn grads via vmap (per example)"] = (
            lambda: vmap_grads(model, x_train, args),
            None,
        )
    rows = []
    for name, (fast, slow) in jobs.items():
        seconds, cpu, memory, _ = fast()
        row = {"n": n, "method": name, "ours_s": seconds, "cpu_s": cpu, "peak_mb": memory}
        if n <= args.skip_naive_above and slow is not None:
            row["naive_s"], _, row["naive_peak_mb"], _ = measure(slow, device)
        rows.append(row)
        print(_format(row), flush=True)
    if args.model == "lstm":
        return _close(n, rows)
    # LiSSA: time a few recursion steps and extrapolate to the reference's depth of 100,
    # with the Hessian split at the code (code_hvp, from MIN_VECTORS vectors on) and without.
    ref_ms = naive_hvp_ms(model, x_train)
    for label, min_vectors in (("", per_sample_grads.MIN_VECTORS), (", generic HVP", n + 1)):
        per_sample_grads.MIN_VECTORS = min_vectors
        try:
            grads_s, grads_cpu, _, _ = ours(InfluenceFunctions, recursion_depth=0)
            lissa_s, lissa_cpu, memory, _ = ours(
                InfluenceFunctions, recursion_depth=args.lissa_steps
            )
        finally:
            per_sample_grads.MIN_VECTORS = code_hvp.MIN_VECTORS
        step_s = max(lissa_s - grads_s, 0.0) / args.lissa_steps
        step_cpu = max(lissa_cpu - grads_cpu, 0.0) / args.lissa_steps
        row = {
            "n": n,
            "method": f"IF-LiSSA{label} (x{LISSA_DEPTH} extrapolated)",
            "ours_s": grads_s + LISSA_DEPTH * step_s,
            "cpu_s": grads_cpu + LISSA_DEPTH * step_cpu,
            "naive_s": n * LISSA_DEPTH * ref_ms / 1000,
            "peak_mb": memory,
            "hvp_ms": 1000 * step_s / n,
            "hvp_cpu_ms": 1000 * step_cpu / n,
            "ref_hvp_ms": ref_ms,
        }
        rows.append(row)
        print(_format(row), flush=True)
    return _close(n, rows)


def _close(n: int, rows: list[dict]) -> list[dict]:
    fast_three = sum(r["ours_s"] for r in rows if r["method"] in ("TracIn", "SimplEx", "DkNN"))
    print(f"n={n}: TracIn + SimplEx + DkNN together {fast_three:.2f} s", flush=True)
    return rows


def vmap_grads(model: nn.Module, x: torch.Tensor, args: argparse.Namespace):
    """Per-example gradients through ``vmap(grad)`` over the fused LSTM, scaled to n examples.

    The generic path is timed on ``--vmap-examples`` examples and extrapolated linearly (it
    loops over examples inside vmap's fallback), so the row compares with TracIn's per-example
    gradient step at equal n: seconds for n examples, one checkpoint.
    """
    functional = LossFunctional(model)
    functional._recurrent_grads = False  # force the generic vmap path for the comparison
    params, fixed = functional.split()
    k = min(args.vmap_examples, len(x))
    seconds, cpu, memory, out = measure(
        lambda: functional.per_example_grads(params, fixed, x[:k], x[:k], k), x.device
    )
    fast = LossFunctional(model)
    fast_s, _, _, fast_out = measure(
        lambda: fast.per_example_grads(params, fixed, x[:k], x[:k], k), x.device
    )
    error = (fast_out - out).abs().max().item() / out.abs().max().item()
    print(
        f"  per-example gradients, {k} examples: vmap {1000 * seconds / k:.1f} ms/example, "
        f"LSTM path {1000 * fast_s / k:.2f} ms/example (x{seconds / fast_s:.0f}); "
        f"max relative difference {error:.1e}",
        flush=True,
    )
    return seconds * len(x) / k, cpu * len(x) / k, memory, out


def run(args: argparse.Namespace) -> list[dict]:
    """Times each explainer against its naive reference at each size; one row per timing."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.model == "lstm":
        model = RecurrentAutoencoder(seq_len=140, embedding_dim=64)
    else:
        model = AutoEncoderMnist(EncoderMnist(4), DecoderMnist(4), 4)
    model = model.to(device).eval()
    model.lr = 1e-3
    states = checkpoints(model, args.checkpoints)
    # Warm-up at a small size: the first calls create oneDNN kernels (seconds on a CPU).
    warm = argparse.Namespace(
        **{**vars(args), "arnoldi_iter": 2, "skip_naive_above": 0, "vmap_examples": 2}
    )
    bench_size(8, model, states[:1], warm)
    print("(warm-up done)\n", flush=True)
    return [row for n in args.sizes for row in bench_size(n, model, states, args)]


def _format(row: dict) -> str:
    naive = row.get("naive_s")
    parts = [
        f"n={row['n']:>5}",
        f"{row['method']:<30}",
        f"ours {row['ours_s']:8.2f} s (CPU {row['cpu_s']:8.2f} s)",
        f"naive {naive:9.2f} s" if naive is not None else "naive        -   ",
        f"x{naive / row['ours_s']:7.1f}" if naive is not None else "        ",
        f"peak {row['peak_mb']:6.0f} MB",
    ]
    if "hvp_ms" in row:
        parts.append(
            f"HVP {row['hvp_ms']:.2f} ms/vector, CPU {row['hvp_cpu_ms']:.2f} ms (reference-style"
            f" here {row['ref_hvp_ms']:.1f} ms, reference {REFERENCE_HVP_MS:.0f} ms)"
        )
    return " | ".join(parts)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    """Parses the command line and prints the timings as a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--checkpoints", type=int, default=10)
    parser.add_argument("--skip-naive-above", type=int, default=300)
    parser.add_argument("--lissa-steps", type=int, default=2)
    parser.add_argument("--arnoldi-iter", type=int, default=100)
    parser.add_argument("--rank", type=int, default=50)
    parser.add_argument("--model", choices=["mnist", "lstm"], default="mnist")
    parser.add_argument(
        "--hessian-size", type=int, default=None, help="Arnoldi's Hessian examples (None: all n)"
    )
    parser.add_argument("--vmap-examples", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--hvp-batch-size", type=int, default=200, help="Arnoldi's examples per Hessian product"
    )
    print(f"load average before: {_load()}", flush=True)
    rows = run(parser.parse_args())
    print(f"load average after: {_load()}")
    print(
        "\n| n | method | ours (s) | ours CPU (s) | naive (s) | speed-up | peak MB ours "
        "| peak MB naive |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        naive = r.get("naive_s")
        ratio = f"{naive / r['ours_s']:.1f}x" if naive is not None else "-"
        naive_s = f"{naive:.2f}" if naive is not None else "-"
        naive_mb = f"{r['naive_peak_mb']:.0f}" if "naive_peak_mb" in r else "-"
        print(
            f"| {r['n']} | {r['method']} | {r['ours_s']:.2f} | {r['cpu_s']:.2f} | {naive_s} "
            f"| {ratio} "
            f"| {r['peak_mb']:.0f} | {naive_mb} |"
        )


if __name__ == "__main__":
    main()
