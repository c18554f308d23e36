"""TracIn, DkNN and SimplEx on a cached ECG5000 model, per checkpoint set; a gradient check.

Usage: ``python docs/reproduction/probes/ecg_tracin.py CACHE n_train n_test dim seed
n_explained gradcheck|none EPOCHS`` with ``EPOCHS`` the checkpoints summed (e.g. ``4,8``).
``gradcheck`` compares our per-example encoder gradients with a plain loop of
``torch.autograd.grad`` over one beat at a time through the fused ``nn.LSTM``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from docs.reproduction.probes._common import ecg_model, ecg_splits, explained, print_rates
from lfxai.explanations.examples import EXAMPLE_METHODS
from lfxai.explanations.examples.per_sample_grads import LossFunctional


def loop_gradients(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Encoder gradients of each example's own loss, one backward per example: ``(N, P)``."""
    params = list(model.encoder.parameters())
    rows = []
    for i in range(len(x)):
        grads = torch.autograd.grad(model.loss(x[i : i + 1]), params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


def main(argv: list[str]) -> None:
    cache = Path(argv[0])
    n_train, n_test, dim, seed, n_explained = map(int, argv[1:6])
    check, epochs = argv[6] == "gradcheck", argv[7].split(",")
    torch.set_num_threads(1)
    start = time.time()
    splits = ecg_splits(n_train, n_test, seed)
    model = ecg_model(dim, splits, cache)
    train, test = explained(splits, n_explained, seed)
    print(f"normal share: test {test.y.float().mean():.3f}, train {train.y.float().mean():.3f}")
    if check:
        functional = LossFunctional(model)
        params, fixed = functional.split()
        ours = functional.per_example_grads(params, fixed, train.x[:20], train.x[:20], 64)
        loop = loop_gradients(model, train.x[:20])
        error = ((ours - loop).abs().max() / loop.abs().max()).item()
        print(f"per-example gradients vs loop: max relative error {error:.2e}, {tuple(ours.shape)}")
    loaders = [(train.x, train.y)], [(test.x, test.y)]
    for method in ("DKNN", "SimplEx"):
        explainer = EXAMPLE_METHODS[method](model, progress=False)
        print_rates(explainer.attribute_loader("cpu", *loaders), train, test, method)
    checkpoints = [str(cache / "ckpt" / f"ae_checkpoint_{e}.pt") for e in epochs]
    tracin = EXAMPLE_METHODS["TracIn"](
        model, checkpoints=checkpoints, learning_rate=1e-3, progress=False
    )
    scores = tracin.attribute_loader("cpu", *loaders)
    print_rates(scores, train, test, f"TracIn, checkpoints after epochs {','.join(epochs)}")
    print(f"wall {time.time() - start:.0f} s, cpu {time.process_time():.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
