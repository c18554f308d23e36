"""How the ranking of label-free attributions decides the masking curve of a ResNet-18 encoder.

No CIFAR-10 files are reachable here, so this probe runs the CIFAR-10 pipeline's encoder (our
SimCLR ResNet-18, random weights: [R4] reproduced the paper's CIFAR-10 plot with random
weights) on colour images made from MNIST test digits (32x32, one random colour per digit and
background, so channels differ). Masked values take the Gaussian-blurred image (kernel 21,
sigma 5), as in the experiment. For GradientShap and Random it prints the representation
shift at each k for three rankings: ours (signed scores, each colour value separately), the
reference's (|score| summed over channels, whole pixels) and signed scores on whole pixels.

``images=generated`` runs it instead on the generated stripes-and-noise images that the test
fixtures and this machine's CIFAR-10 quick runs used (no real files here).

Usage: ``python docs/reproduction/probes/cifar_ranking.py n_images seed [digits|generated]``.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from lfxai.data.cifar10 import generated_images
from lfxai.data.masking import GaussianBlur, apply_mask, top_k_mask
from lfxai.explanations.features import attribute_auxiliary, make_feature_method
from lfxai.metrics.consistency import encode, representation_shift
from lfxai.models.simclr import SimCLREncoder
from lfxai.plugins.base import get_dataset

PERCENTAGES = (5, 10, 20, 50, 80)


def colour_digits(n: int, seed: int) -> torch.Tensor:
    """``n`` MNIST test digits as 32x32 colour images ``(n, 3, 32, 32)`` in [0, 1]."""
    digits = get_dataset("mnist").load("data", "standard", seed, 1, n).explain.x
    generator = torch.Generator().manual_seed(seed)
    ink, paper = (torch.rand(n, 3, 1, 1, generator=generator) for _ in range(2))
    shape = F.interpolate(digits, size=(32, 32), mode="bilinear", align_corners=False)
    return shape * ink + (1 - shape) * paper


def generated(n: int, seed: int) -> torch.Tensor:
    """``n`` generated CIFAR-format images (:func:`generated_images`) in [0, 1]."""
    images, _ = generated_images(n, np.random.default_rng(seed))
    return torch.from_numpy(images).float() / 255


def main(argv: list[str]) -> None:
    n, seed = int(argv[0]), int(argv[1])
    images = argv[2] if len(argv) > 2 else "digits"
    if images not in ("digits", "generated"):
        raise SystemExit(f"images must be digits or generated, got {images!r}")
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    wall, cpu = time.time(), time.process_time()
    encoder = SimCLREncoder().eval()
    x = colour_digits(n, seed) if images == "digits" else generated(n, seed)
    blur = GaussianBlur(21, 5.0)
    blurred = blur(x)
    codes = encode(encoder, x, torch.device("cpu"))
    for method in ("GradientShap", "Random"):
        attribution = make_feature_method(method, encoder, seed=seed)
        scores = torch.from_numpy(
            attribute_auxiliary(encoder, [x], "cpu", attribution, blur, progress=False)
        )
        rankings = {
            "ours (signed, per value)": scores,
            "reference (|.| summed, per pixel)": scores.abs().sum(1, keepdim=True),
            "signed summed, per pixel": scores.sum(1, keepdim=True),
        }
        negative = (scores < 0).float().mean().item()
        print(f"{method} (negative share of the values {negative:.2f})")
        for name, ranked in rankings.items():
            shifts = [
                representation_shift(
                    codes,
                    encode(encoder, apply_mask(x, top_k_mask(ranked, p / 100), blurred), "cpu"),
                )
                for p in PERCENTAGES
            ]
            print(f"  {name:36s} " + " ".join(f"{s:.4g}" for s in shifts), flush=True)
    seconds = f"wall {time.time() - wall:.0f} s, cpu {time.process_time() - cpu:.0f} s"
    print(f"k = {PERCENTAGES} %; {seconds}")


if __name__ == "__main__":
    main(sys.argv[1:])
