"""Influence functions on a cached ECG5000 model: the gradient product at the final model,
``arnoldi`` and ``lissa_arnoldi`` on the same Hessian examples, the Hessian's Ritz values and
LiSSA's factor on them; optionally LiSSA itself on ``n_lissa`` x ``n_lissa`` pairs.

Usage: ``python docs/reproduction/probes/ecg_influence.py CACHE n_train n_test dim seed
n_explained hessian_size arnoldi_iter arnoldi_rank [n_lissa]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from docs.reproduction.probes._common import ecg_model, ecg_splits, explained, print_rates
from lfxai.explanations.examples import EXAMPLE_METHODS
from lfxai.explanations.examples import influence_estimators as influence
from lfxai.explanations.examples.per_sample_grads import LossFunctional


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()


def main(argv: list[str]) -> None:
    cache = Path(argv[0])
    n_train, n_test, dim, seed, n_explained, hessian_size, iters, rank = map(int, argv[1:9])
    n_lissa = int(argv[9]) if len(argv) > 9 else 0
    torch.set_num_threads(1)
    splits = ecg_splits(n_train, n_test, seed)
    model = ecg_model(dim, splits, cache)
    train, test = explained(splits, n_explained, seed)
    with torch.no_grad():
        print(f"best model: test L1 {model.loss(splits.test.x).item():.4f}")
    functional = LossFunctional(model)
    params, fixed = functional.split()
    g_train = functional.per_example_grads(params, fixed, train.x, train.x, 512)
    g_test = functional.per_example_grads(params, fixed, test.x, test.x, 512)
    product = g_test @ g_train.T
    print_rates(product, train, test, "gradient product at the final model")
    ritz = {}
    arnoldi = influence.arnoldi

    def keep_values(*args, **kwargs):  # the Ritz values the explainer computes
        values, vectors = arnoldi(*args, **kwargs)
        ritz["values"] = values
        return values, vectors

    influence.arnoldi = keep_values
    loaders = [(train.x, train.y)], [(test.x, test.y)]
    options = dict(hessian_size=hessian_size, arnoldi_iter=iters, arnoldi_rank=rank)
    for method in ("arnoldi", "lissa_arnoldi"):
        start = time.process_time()
        explainer = EXAMPLE_METHODS["InfluenceFunctions"](
            model, progress=False, influence_method=method, hvp_batch_size=50, **options
        )
        scores = explainer.attribute_loader("cpu", *loaders)
        seconds = time.process_time() - start
        print_rates(scores, train, test, f"influence {method} ({seconds:.0f} cpu s)")
        print(f"  correlation with the gradient product {correlation(scores, product):.3f}")
    values = ritz["values"][ritz["values"].abs().argsort(descending=True)][:12]
    print("Ritz values by magnitude", [round(v, 3) for v in values.tolist()])
    factors = influence.lissa_filter(values, 100, 1e-3, 1000.0)
    zero = influence.lissa_filter(torch.zeros(1), 100, 1e-3, 1000.0).item()
    print("LiSSA's factor on them", [round(v, 4) for v in factors.tolist()], f"(at 0: {zero:.4f})")
    if n_lissa:
        start = time.time()
        small = [(train.x[:n_lissa], train.y[:n_lissa])], [(test.x[:n_lissa], test.y[:n_lissa])]
        lissa = EXAMPLE_METHODS["InfluenceFunctions"](
            model, progress=False, influence_method="lissa", hvp_batch_size=50
        ).attribute_loader("cpu", *small)
        part = product[:n_lissa, :n_lissa]
        print(
            f"LiSSA {n_lissa} x {n_lissa} ({time.time() - start:.0f} wall s): correlation with "
            f"the gradient product {correlation(lissa, part):.3f}"
        )
    print(f"cpu {time.process_time():.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
