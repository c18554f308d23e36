"""Per-latent-unit attribution throughput: units batched in one call vs one call per unit.

Run from the repository root: ``python -m benchmarks.unit_attribution [--device cuda]``.
The encoder is the Burgess VAE's (32x32, d=3, as MNIST ``disvae``; untrained: the cost of
an attribution does not depend on the weights) on random images, explained with
GradientShap against a black baseline by ``attribute_individual_dim`` both ways; the two
paths alternate in this one process after a warm-up. Nothing else heavy should run
meanwhile: on a shared CPU the numbers mean little. For scale: the seed measured label-free
GradientShap (one map per image, not per unit) at 1.85 s per 1,000 MNIST images on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from lfxai.devices import get_device
from lfxai.explanations.features import attribute_individual_dim, make_feature_method
from lfxai.models.vae import burgess_vae

PATHS = {"batched": True, "per-unit loop": False}


def images_per_second(
    encoder: torch.nn.Module,
    loader: DataLoader,
    dim_latent: int,
    device: torch.device,
    batch_units: bool,
) -> tuple[float, float]:
    """Images explained per wall-clock second and per process-CPU second."""
    method = make_feature_method("GradientShap", encoder)
    baseline = torch.zeros(1, *loader.dataset.tensors[0].shape[1:], device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu = time.perf_counter(), time.process_time()
    scores = attribute_individual_dim(
        encoder, dim_latent, loader, device, method, baseline, False, batch_units
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return len(scores) / wall, len(scores) / max(cpu, 1e-9)


def run(args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    """Images per second (wall and CPU) of the loop and the batched path, after a warm-up."""
    device = get_device(args.device)
    torch.manual_seed(0)
    side = args.side
    model = burgess_vae((1, side, side), args.dim_latent, "beta_vae", 1.0, 1)
    encoder = model.encoder.to(device).eval()
    x = torch.rand(args.n_images, 1, side, side)
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x))), batch_size=args.batch_size)
    warm = DataLoader(TensorDataset(x[: args.batch_size], torch.zeros(args.batch_size)))
    for batched in PATHS.values():
        images_per_second(encoder, warm, args.dim_latent, device, batched)
    rates: dict[str, list[tuple[float, float]]] = {path: [] for path in PATHS}
    for repeat in range(args.repeats):
        order = list(PATHS) if repeat % 2 == 0 else list(PATHS)[::-1]
        for path in order:
            wall, cpu = images_per_second(encoder, loader, args.dim_latent, device, PATHS[path])
            rates[path].append((wall, cpu))
            print(f"repeat {repeat}: {path:<14} {wall:8.0f} images/s ({cpu:.0f} per CPU s)")
    return rates


def main(argv: list[str] | None = None) -> None:
    """Parses the command line and prints the timings of both paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--n-images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=500, help="images per data batch")
    parser.add_argument("--dim-latent", type=int, default=3)
    parser.add_argument("--side", type=int, default=32, choices=(32, 64))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rates = run(args)
    (b_wall, b_cpu), (l_wall, l_cpu) = (
        (statistics.median(r[0] for r in rates[p]), statistics.median(r[1] for r in rates[p]))
        for p in PATHS
    )
    print(
        f"\n{get_device(args.device)}, {torch.get_num_threads()} threads, {args.n_images} "
        f"{args.side}x{args.side} images, d={args.dim_latent}, batch {args.batch_size}, "
        f"GradientShap, median of {args.repeats}:\n"
        f"batched {b_wall:.0f} images/s | per-unit loop {l_wall:.0f} images/s | "
        f"batched / loop = {b_wall / l_wall:.2f} (per CPU second: {b_cpu:.0f} vs {l_cpu:.0f}, "
        f"{b_cpu / l_cpu:.2f})"
    )


if __name__ == "__main__":
    main()
