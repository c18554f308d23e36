"""Checks that lfxai computes the same things on a GPU as on the CPU, reproducibly.

Run from the repository root: ``python -m benchmarks.gpu_check [--skip-entrypoints]``. One
line per check (PASS, FAIL or SKIP, with its numbers), then a summary; the exit code is 1 if
any check failed. Without CUDA it says so, runs the CPU halves (determinism of ``fit``, the
explainers, the LSTM path) and exits 0. Sizes are small: minutes on one GPU, the entry points
(twice each, ``profile=smoke``) taking most of it.

Tolerances, CUDA against the CPU: different kernels round differently and cuDNN convolutions
may use TF32 (10-bit mantissa, about 5e-4 relative per product), so values are compared by
relative L2 error (1e-2) and rankings by Spearman correlation (0.99). CUDA against CUDA with
one seed must be bitwise identical (``seed_everything`` selects deterministic kernels).
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from benchmarks.training_loader import epoch_seconds
from lfxai.data.splits import Split
from lfxai.explanations import examples
from lfxai.explanations.examples import InfluenceFunctions
from lfxai.explanations.features import FEATURE_METHODS, attribute_auxiliary, make_feature_method
from lfxai.models.images import AutoEncoderMnist, DecoderMnist, EncoderMnist
from lfxai.models.pretext import GaussianNoise
from lfxai.training import fit, get_device, seed_everything

REPO = Path(__file__).resolve().parents[1]
SEED = 0
CPU = torch.device("cpu")
MAX_REL_ERROR, MIN_SPEARMAN = 1e-2, 0.99
# Adam's per-coordinate normalisation turns rounding noise in near-zero gradients into
# full-size steps, so CPU and CUDA weights drift apart slowly; losses stay much closer.
FIT_LOSS_REL, FIT_WEIGHT_REL = 1e-2, 5e-2
Outcome = tuple[str, str]  # (status, detail)


@dataclass
class Report:
    """Runs checks, prints one line each and remembers their statuses."""

    statuses: list[str] = field(default_factory=list)

    def run(self, name: str, check: Callable[[], Outcome]) -> None:
        start = time.perf_counter()
        try:
            status, detail = check()
        except Exception as error:  # a crash is a failed check, not the end of the report
            status, detail = "FAIL", f"{type(error).__name__}: {error}".splitlines()[0][:300]
            traceback.print_exc(file=sys.stderr)
        self.statuses.append(status)
        print(
            f"{status:<4}  {name:<40} {detail}  [{time.perf_counter() - start:.1f} s]", flush=True
        )

    def skip(self, name: str, why: str) -> None:
        self.run(name, lambda: ("SKIP", why))


# Data and models ----------------------------------------------------------------------------


def images(n: int, seed: int = SEED) -> Split:
    """Random 1x28x28 images in [0, 1] with dummy labels."""
    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    return Split(x, torch.zeros(n, dtype=torch.long))


def sequences(n: int, length: int = 24, seed: int = SEED) -> Split:
    """Noisy sine waves ``(n, length, 1)`` of random frequency and phase."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, length)
    freq, phase = 1 + 3 * torch.rand(n, 1, generator=g), 6.28 * torch.rand(n, 1, generator=g)
    x = torch.sin(6.28 * freq * t + phase) + 0.1 * torch.randn(n, length, generator=g)
    return Split(x.unsqueeze(-1), torch.zeros(n, dtype=torch.long))


class LSTMAutoencoder(nn.Module):
    """Tiny sequence autoencoder shaped like the ECG5000 one, with an L1 loss.

    Encoder: LSTM 1 -> 2d -> d, the code is the last hidden state; decoder: the code repeated
    over time, LSTM d -> 2d and a linear read-out to one channel.
    """

    def __init__(self, d: int = 4, name: str = "lstm") -> None:
        super().__init__()
        self.encoder = _LSTMEncoder(d)
        self.decoder = nn.LSTM(d, 2 * d, batch_first=True)
        self.readout = nn.Linear(2 * d, 1)
        self.name, self.loss_f = name, nn.L1Loss()
        self.checkpoints_files: list[str] = []
        self.lr: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = self.encoder(x)[:, None, :].repeat(1, x.shape[1], 1)
        return self.readout(self.decoder(code)[0])

    def loss(self, x: torch.Tensor, _y: torch.Tensor | None = None) -> torch.Tensor:
        return self.loss_f(self(x), x)


class _LSTMEncoder(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.first = nn.LSTM(1, 2 * d, batch_first=True)
        self.second = nn.LSTM(2 * d, d, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x)[0])[1][0][-1]


def mnist_model(noise: bool = True) -> AutoEncoderMnist:
    pretext = GaussianNoise() if noise else None
    return AutoEncoderMnist(EncoderMnist(4), DecoderMnist(4), 4, pretext, name="gpu_check")


def train(make: Callable[[], nn.Module], data: tuple[Split, Split], device, folder: Path):
    """Seeds, builds and fits a model for 2 epochs with a checkpoint after each."""
    seed_everything(SEED)
    model = make()
    result = fit(
        model,
        *data,
        device,
        2,
        patience=0,
        checkpoint_every=1,
        checkpoint_dir=folder,
        progress=False,
        batch_size=64,
        seed=SEED,
    )
    return model, result


# Comparisons --------------------------------------------------------------------------------


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = torch.as_tensor(a).double().cpu(), torch.as_tensor(b).double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def row_spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """The smallest Spearman correlation between matching rows of two score matrices."""
    a, b = (
        torch.as_tensor(a).cpu().reshape(len(a), -1),
        torch.as_tensor(b).cpu().reshape(len(b), -1),
    )
    return min(float(spearmanr(x.numpy(), y.numpy()).statistic) for x, y in zip(a, b, strict=True))


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(torch.as_tensor(a).cpu(), torch.as_tensor(b).cpu())


def compare(name: str, runs: list[torch.Tensor], cuda: bool) -> Outcome:
    """Bitwise equality of two runs on the device, then closeness to the CPU run if any."""
    if not same(runs[0], runs[1]):
        return (
            "FAIL",
            f"two {name} runs with one seed differ (rel {rel_error(runs[0], runs[1]):.2e})",
        )
    if not cuda:
        return "PASS", "CPU repeat bitwise identical"
    err, rho = rel_error(runs[0], runs[2]), row_spearman(runs[0], runs[2])
    ok = err <= MAX_REL_ERROR and rho >= MIN_SPEARMAN
    return (
        "PASS" if ok else "FAIL"
    ), f"CUDA repeat identical; vs CPU rel {err:.1e}, Spearman >= {rho:.4f}"


def devices(cuda: bool) -> list[torch.device]:
    """Where each compared computation runs: twice on the device, then once on the CPU."""
    return [torch.device("cuda")] * 2 + [CPU] if cuda else [CPU, CPU]


# Checks -------------------------------------------------------------------------------------


def environment(cuda: bool, why_not: str) -> Outcome:
    parts = [f"torch {torch.__version__}", f"CUDA {torch.version.cuda}"]
    if not cuda:
        return "PASS", ", ".join(parts) + f"; no CUDA ({why_not}): CPU checks only"
    props = torch.cuda.get_device_properties(0)
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    parts += [
        f"cuDNN {torch.backends.cudnn.version()}",
        f"{props.name} (cc {props.major}.{props.minor}, {props.total_memory / 2**30:.0f} GiB)",
        f"TF32 matmul={tf32[0]} cudnn={tf32[1]}",
        f"float32 matmul precision {torch.get_float32_matmul_precision()}",
        f"deterministic={torch.are_deterministic_algorithms_enabled()}",
    ]
    return "PASS", ", ".join(parts)


@dataclass(frozen=True)
class Sizes:
    """Problem sizes: the GPU's exercise the kernels; the CPU's only show that the code runs."""

    n_fit: int  # training images of the fit checks (and explained examples' pool)
    n_train: int  # explained training examples
    n_test: int  # explained test examples
    lissa_depth: int
    arnoldi_iter: int
    simplex_epochs: int
    timing_images: int  # MNIST epoch of the timing check
    timing_lissa: int  # training vectors (and batch) of the timed LiSSA step
    lstm_train: int  # explained training sequences (a quarter as many test ones)
    lstm_length: int  # time steps per sequence


# The LSTM's CPU reference runs through vmap's slow per-example fallback: kept small.
GPU_SIZES = Sizes(512, 64, 16, 20, 30, 1000, 60_000, 1000, 32, 24)
CPU_SIZES = Sizes(256, 8, 4, 2, 4, 100, 900, 10, 8, 12)


@dataclass
class Trained:
    """Sizes, data and the models trained by the fit checks (reused by the explainers)."""

    folder: Path
    sizes: Sizes
    models: dict[str, nn.Module] = field(default_factory=dict)

    @property
    def data(self) -> tuple[Split, Split]:
        return images(self.sizes.n_fit), images(self.sizes.n_fit // 4, seed=1)


def fit_repeat(state: Trained, device: torch.device) -> Outcome:
    runs = []
    for i in range(2):
        model, result = train(mnist_model, state.data, device, state.folder / f"mnist{i}")
        runs.append((model, result))
    (first, r1), (second, r2) = runs
    state.models["mnist"] = first
    diff = [k for k, v in first.state_dict().items() if not same(v, second.state_dict()[k])]
    files = first.checkpoints_files
    # No map_location: a tensor saved from the GPU would load on the GPU (or fail here).
    on_cpu = all(v.device == CPU for f in files for v in torch.load(f, weights_only=True).values())
    losses = ", ".join(f"{loss:.4f}" for loss in r1.test_loss)
    detail = f"{len(files)} checkpoints hold CPU tensors: {on_cpu}; test losses {losses}"
    if diff or r1.train_loss != r2.train_loss:
        return "FAIL", f"{len(diff)} tensors differ between two runs; " + detail
    return ("PASS" if on_cpu else "FAIL"), "bitwise identical weights; " + detail


def fit_cross_device(state: Trained) -> Outcome:
    # No pretext noise: CUDA and the CPU draw different random numbers for one seed.
    results, weights = [], []
    for device in (torch.device("cuda"), CPU):
        model, result = train(
            lambda: mnist_model(noise=False),
            state.data,
            device,
            state.folder / f"plain_{device.type}",
        )
        results.append(result.train_loss + result.test_loss)
        weights.append(torch.cat([p.detach().cpu().flatten() for p in model.parameters()]))
    loss_err, weight_err = rel_error(results[0], results[1]), rel_error(weights[0], weights[1])
    ok = loss_err <= FIT_LOSS_REL and weight_err <= FIT_WEIGHT_REL
    return ("PASS" if ok else "FAIL"), (
        f"losses rel {loss_err:.1e} (<= {FIT_LOSS_REL}), weights rel {weight_err:.1e} "
        f"(<= {FIT_WEIGHT_REL}) after 2 epochs"
    )


def feature_method(state: Trained, name: str, cuda: bool) -> Outcome:
    x = state.data[1].x[: 2 * state.sizes.n_test]
    runs = []
    for device in devices(cuda):
        encoder = copy.deepcopy(state.models["mnist"].encoder).to(device)
        np.random.seed(SEED)  # GradientShap draws its interpolation points with NumPy
        torch.manual_seed(SEED)
        method = make_feature_method(name, encoder, seed=SEED)
        baseline = torch.zeros(1, 1, 28, 28)
        runs.append(
            torch.from_numpy(
                attribute_auxiliary(encoder, [(x,)], device, method, baseline, progress=False)
            )
        )
    return compare(name, runs, cuda)


EXPLAINERS = ("IF-lissa", "IF-arnoldi", "TracIn", "SimplEx", "DKNN")


def explainer_options(key: str, sizes: Sizes) -> tuple[str, dict]:
    """The registry key of an explainer and its options (named as the experiments' settings)."""
    return {
        "IF-lissa": ("InfluenceFunctions", {"recursion_depth": sizes.lissa_depth}),
        "IF-arnoldi": (
            "InfluenceFunctions",
            {"influence_method": "arnoldi", "arnoldi_iter": sizes.arnoldi_iter, "arnoldi_rank": 5},
        ),
        "TracIn": ("TracIn", {}),
        "SimplEx": ("SimplEx", {"simplex_steps": sizes.simplex_epochs}),
        "DKNN": ("DKNN", {}),
    }[key]


def explain(model, key: str, sizes: Sizes, x_train, x_test, device, loss_f=None) -> torch.Tensor:
    name, options = explainer_options(key, sizes)
    if name == "InfluenceFunctions":
        options["hvp_batch_size"] = len(x_train)  # LiSSA's resampled batches
    model = copy.deepcopy(model).to(device)  # checkpoints_files travel with the copy
    explainer = examples.EXAMPLE_METHODS[name](model, loss_f or nn.MSELoss(), progress=False)
    return explainer.attribute_loader(device, [(x_train,)], [(x_test,)], **options)


def example_method(state: Trained, key: str, cuda: bool) -> Outcome:
    (train_split, test_split), sizes = state.data, state.sizes
    x_train, x_test = train_split.x[: sizes.n_train], test_split.x[: sizes.n_test]
    model = state.models["mnist"]
    runs = [explain(model, key, sizes, x_train, x_test, d) for d in devices(cuda)]
    return compare(key, runs, cuda)


def lstm(state: Trained, device: torch.device, cuda: bool) -> Outcome:
    n, length = state.sizes.lstm_train, state.sizes.lstm_length
    sizes = replace(
        state.sizes,
        n_train=n,
        n_test=n // 4,
        lissa_depth=min(state.sizes.lissa_depth, 5),
        arnoldi_iter=min(state.sizes.arnoldi_iter, 10),
    )
    data = (sequences(4 * n, length), sequences(n, length, seed=1))
    model, _ = train(LSTMAutoencoder, data, device, state.folder / f"lstm_{device.type}")
    x_train, x_test = data[0].x[: sizes.n_train], data[1].x[: sizes.n_test]
    parts, status = [], "PASS"
    for key in ("TracIn", "IF-lissa", "IF-arnoldi"):
        runs = [explain(model, key, sizes, x_train, x_test, d, nn.L1Loss()) for d in devices(cuda)]
        if not all(torch.isfinite(r).all() for r in runs):
            return "FAIL", f"{key} gave non-finite scores"
        outcome = compare(key, runs, cuda)
        status = "FAIL" if outcome[0] == "FAIL" else status
        parts.append(f"{key}: {outcome[1]}")
    saliency = attribute_auxiliary(
        model.encoder,
        [(x_test.to(device),)],
        device,
        make_feature_method("Saliency", model.encoder),
        progress=False,
    )
    parts.append(f"Saliency finite: {bool(np.isfinite(saliency).all())}")
    return status, "; ".join(parts)


def timings(device: torch.device, sizes: Sizes) -> Outcome:
    """One MNIST epoch (both data paths) and one LiSSA step, data on the device."""
    n_images, n_lissa, batch = sizes.timing_images, sizes.timing_lissa, min(200, sizes.timing_lissa)
    train_split, test_split = images(n_images), images(n_images // 6, seed=1)
    epoch_seconds("split", train_split.head(600), test_split.head(300), device, 300)  # warm-up
    split_s = epoch_seconds("split", train_split, test_split, device, 300)
    loader_s = epoch_seconds("dataloader", train_split, test_split, device, 300)
    seed_everything(SEED)
    model = mnist_model().to(device).eval()
    x = images(n_lissa).x.to(device)

    def lissa(depth: int) -> float:
        explainer = InfluenceFunctions(model, nn.MSELoss(), X_train=x, progress=False)
        _sync(device)
        start = time.perf_counter()
        explainer.attribute(x[:10], recursion_depth=depth, hvp_batch_size=batch)
        _sync(device)
        return time.perf_counter() - start

    lissa(1)  # warm-up
    step = max(lissa(3) - lissa(0), 0.0) / 3
    return "PASS", (
        f"{device.type}: MNIST epoch ({n_images} + {n_images // 6} images, batch 300) "
        f"Split {split_s:.2f} s, DataLoader {loader_s:.2f} s; LiSSA step on {n_lissa} "
        f"vectors, batch {batch}: {1000 * step:.0f} ms ({1000 * step / n_lissa:.2f} ms per vector)"
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# Entry points -------------------------------------------------------------------------------


def entry_points() -> list[tuple[str, str]]:
    """Every (dataset, experiment) pair a user can run, from the experiment registry."""
    from lfxai.experiments.registry import entries

    return sorted(entries())


def mlflow_run(dataset: str, name: str, folder: Path, args) -> tuple[dict, dict]:
    """Runs one entry point with ``mlflow run`` into its own SQLite store in ``folder``.

    One store per run: concurrent writers would contend for one SQLite file's lock.

    Returns:
        The final metrics (timings left out) and the params of its top-level run.
    """
    from mlflow.tracking import MlflowClient

    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment("gpu-check", artifact_location=(folder / "artifacts").as_uri())
    params = {"name": name, "profile": "smoke", "device": "auto"}
    if args.data_dir:
        params["data_dir"] = args.data_dir
    command = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", dataset]
    command += [arg for key, value in params.items() for arg in ("-P", f"{key}={value}")]
    command += ["--env-manager", "local", "--experiment-name", "gpu-check"]
    env = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")
    }
    env["MLFLOW_TRACKING_URI"] = uri
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # Concurrent runs share the CPU cores; the same count in both repeats keeps them equal.
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=args.entrypoint_timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-300:]}")
    runs = client.search_runs([client.get_experiment_by_name("gpu-check").experiment_id])
    top = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    if len(top) != 1:
        raise RuntimeError(f"expected one top-level run, found {len(top)}")
    metrics = {k: v for k, v in top[0].data.metrics.items() if not is_timing(k)}
    return metrics, top[0].data.params


def is_timing(metric: str) -> bool:
    """Wall-clock metrics (``time/*``, ``throughput/*``, ``*_seconds``) and system metrics
    (``system/*``: utilisation, memory) differ between runs."""
    return metric.startswith(("time/", "throughput/", "system/")) or "second" in metric


def same_runs(runs: list[tuple[dict, dict]]) -> Outcome:
    """Two runs of one entry point: identical final metrics, both on CUDA."""
    (first, params), (second, params2) = runs
    differ = sorted(k for k in first.keys() | second.keys() if first.get(k) != second.get(k))
    used = [params.get("device_used"), params2.get("device_used")]
    ok = not differ and used == ["cuda", "cuda"]
    return ("PASS" if ok else "FAIL"), (
        f"{len(first)} final metrics identical: {not differ}"
        + (f" (differ: {differ[:5]})" if differ else "")
        + f"; device_used {used}"
    )


def check_entry_points(report: Report, args) -> None:
    pairs = entry_points()
    folder = Path(tempfile.mkdtemp(prefix="lfxai-gpu-check-"))
    jobs = [(dataset, name, repeat) for dataset, name in pairs for repeat in (0, 1)]
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            job: pool.submit(mlflow_run, *job[:2], folder / "-".join(map(str, job)), args)
            for job in jobs
        }
    for dataset, name in pairs:
        runs = [futures[(dataset, name, repeat)] for repeat in (0, 1)]
        report.run(
            f"entrypoint {dataset} -P name={name}",
            lambda runs=runs: same_runs([future.result() for future in runs]),
        )


# Driver -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto or cuda (GPU checks) or cpu")
    parser.add_argument("--skip-entrypoints", action="store_true")
    parser.add_argument("--data-dir", default=None, help="-P data_dir for the entry points")
    parser.add_argument("--jobs", type=int, default=4, help="entry-point runs at a time")
    parser.add_argument("--entrypoint-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    seed_everything(SEED)  # before any CUDA work: cuBLAS reads its workspace setting once
    report = Report()
    why_not = ""
    try:
        device = get_device(args.device)
    except ValueError as error:
        device, why_not = CPU, str(error)
    cuda = device.type == "cuda"
    if not cuda and not why_not:
        why_not = "CPU asked for" if args.device == "cpu" else "torch.cuda.is_available() is False"
    report.run("environment", lambda: environment(cuda, why_not))
    folder = Path(tempfile.mkdtemp(prefix="lfxai-gpu-check-"))
    state = Trained(folder, GPU_SIZES if cuda else CPU_SIZES)
    report.run(f"fit: one seed twice on {device.type}", lambda: fit_repeat(state, device))
    if cuda:
        report.run("fit: CUDA vs CPU", lambda: fit_cross_device(state))
    else:
        report.skip("fit: CUDA vs CPU", "no CUDA")
    if "mnist" not in state.models:  # the fit check failed: explain an untrained model
        state.models["mnist"] = mnist_model().eval()
    for name in FEATURE_METHODS:
        report.run(f"features: {name}", lambda name=name: feature_method(state, name, cuda))
    for key in EXPLAINERS:
        report.run(f"examples: {key}", lambda key=key: example_method(state, key, cuda))
    report.run(f"LSTM autoencoder on {device.type}", lambda: lstm(state, device, cuda))
    report.run(f"timings on {device.type}", lambda: timings(device, state.sizes))
    if args.skip_entrypoints:
        report.skip("entry points", "--skip-entrypoints")
    elif not cuda:
        report.skip("entry points", "no CUDA (the e2e tests run them on the CPU)")
    else:
        check_entry_points(report, args)
    counts = {s: report.statuses.count(s) for s in ("PASS", "FAIL", "SKIP")}
    print(
        f"\nsummary: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped"
        f" on {device.type}"
    )
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
