"""Checks that lfxai computes the same things on a GPU as on the CPU, reproducibly.

Run from the repository root: ``python -m benchmarks.gpu_check [--skip-entrypoints]``. One
line per check (PASS, FAIL or SKIP, with its numbers), then a summary; the exit code is 1 if
any check failed. Without CUDA it says so, runs the CPU halves (determinism of ``fit``, the
explainers, the LSTM path) and exits 0. Sizes are small: minutes on one GPU, the entry points
(twice each, ``profile=smoke``) taking most of it.

Modules: :mod:`benchmarks.gpu_fixtures` (data, models, sizes), :mod:`benchmarks.gpu_compare`
(tolerances, the report), :mod:`benchmarks.gpu_entry_points` (the entry points twice); this
one holds the checks and the driver.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.gpu_compare import Outcome, Report, compare, devices, rel_error, same
from benchmarks.gpu_entry_points import check_entry_points
from benchmarks.gpu_fixtures import (
    CPU,
    CPU_SIZES,
    GPU_SIZES,
    SEED,
    LSTMAutoencoder,
    Sizes,
    Trained,
    images,
    mnist_model,
    sequences,
    train,
)
from benchmarks.training_loader import epoch_seconds
from lfxai.devices import get_device, seed_everything
from lfxai.explanations import examples
from lfxai.explanations.examples import InfluenceFunctions
from lfxai.explanations.features import FEATURE_METHODS, attribute_auxiliary, make_feature_method

# Adam's per-coordinate normalisation turns rounding noise in near-zero gradients into
# full-size steps, so CPU and CUDA weights drift apart slowly; losses stay much closer.
FIT_LOSS_REL, FIT_WEIGHT_REL = 1e-2, 5e-2


def environment(cuda: bool, why_not: str) -> Outcome:
    """Versions, the GPU and its numerics settings (or why there is none)."""
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


def fit_repeat(state: Trained, device: torch.device) -> Outcome:
    """Two fits with one seed on ``device``: bitwise the same weights, CPU checkpoints."""
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
    """A fit on CUDA against one on the CPU: losses and weights within tolerance."""
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
    """One label-free feature method on the devices (:func:`compare`)."""
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
    """The scores of one example explainer (:data:`EXPLAINERS`) on ``device``."""
    name, options = explainer_options(key, sizes)
    if name == "InfluenceFunctions":
        options["hvp_batch_size"] = len(x_train)  # LiSSA's resampled batches
    model = copy.deepcopy(model).to(device)  # checkpoints_files travel with the copy
    loss_f = loss_f or nn.MSELoss()
    explainer = examples.EXAMPLE_METHODS[name](model, loss_f, progress=False, **options)
    return explainer.attribute_loader(device, [(x_train,)], [(x_test,)])


def example_method(state: Trained, key: str, cuda: bool) -> Outcome:
    """One example explainer on the devices (:func:`compare`)."""
    (train_split, test_split), sizes = state.data, state.sizes
    x_train, x_test = train_split.x[: sizes.n_train], test_split.x[: sizes.n_test]
    model = state.models["mnist"]
    runs = [explain(model, key, sizes, x_train, x_test, d) for d in devices(cuda)]
    return compare(key, runs, cuda)


def lstm(state: Trained, device: torch.device, cuda: bool) -> Outcome:
    """The LSTM autoencoder: trained on ``device``, TracIn and influence finite and compared."""
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
        explainer = InfluenceFunctions(
            model,
            nn.MSELoss(),
            X_train=x,
            progress=False,
            recursion_depth=depth,
            hvp_batch_size=batch,
        )
        _sync(device)
        start = time.perf_counter()
        explainer.attribute(x[:10])
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


def main(argv: list[str] | None = None) -> int:
    """Runs every check, prints one line each and a summary; 1 if any failed."""
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
