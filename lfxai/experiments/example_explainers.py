"""The example explainers' settings, declared once, and the one function building each one.

``ExampleExplainerSettings`` is composed into the schema of every experiment that explains
examples (``consistency_examples``, ``pretext``): its fields are that schema's own flat
settings (``-P recursion_depth=5``, MLflow params ``recursion_depth``), and each has the name
of the explainer's constructor argument it becomes (:func:`build_explainer`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from lfxai.config import check_choices, check_positive
from lfxai.data.splits import Split
from lfxai.explanations.examples import EXAMPLE_METHODS, ExampleBasedExplainer
from lfxai.explanations.examples.influence_functions import METHODS as INFLUENCE_METHODS


@dataclass(frozen=True)
class ExampleExplainerSettings:
    """Options of the example explainers (used by InfluenceFunctions and SimplEx).

    Attributes:
        influence_method: InfluenceFunctions' estimator (``lissa``, ``arnoldi``, ``exact``,
            ``lissa_arnoldi``).
        recursion_depth: LiSSA's steps, each on a batch drawn with replacement.
        hvp_batch_size: examples per Hessian-vector product batch.
        damping: the Hessian's damping.
        scale: LiSSA's scale.
        hessian_size: Hessian examples of arnoldi / exact (None: every HVP batch).
        arnoldi_iter: Arnoldi steps (one Hessian-vector product each).
        arnoldi_rank: eigenpairs kept.
        simplex_steps: SimplEx's Adam steps.
    """

    influence_method: str
    recursion_depth: int
    hvp_batch_size: int
    damping: float
    scale: float
    hessian_size: int | None
    arnoldi_iter: int
    arnoldi_rank: int
    simplex_steps: int

    def validate(self) -> None:
        """Raises :class:`~lfxai.config.ConfigError` naming the bad value and valid choices."""
        check_choices("influence_method", [self.influence_method], INFLUENCE_METHODS)
        check_positive(
            self,  # type: ignore[arg-type]  (reads the named attributes only)
            "hessian_size",
            "recursion_depth",
            "hvp_batch_size",
            "arnoldi_iter",
            "arnoldi_rank",
            "simplex_steps",
        )


def influence_loader(train: Split, settings: ExampleExplainerSettings, seed: int) -> DataLoader:
    """HVP batches drawn with replacement from the whole training set (as the reference).

    Args:
        train: the training split.
        settings: ``recursion_depth`` batches of ``hvp_batch_size`` examples are drawn.
        seed: the sampler's seed.
    """
    sampler = RandomSampler(
        train.x,
        replacement=True,
        num_samples=settings.recursion_depth * settings.hvp_batch_size,
        generator=torch.Generator().manual_seed(seed),
    )
    return DataLoader(
        TensorDataset(train.x, train.y), batch_size=settings.hvp_batch_size, sampler=sampler
    )


def _influence_options(
    settings: ExampleExplainerSettings, train: Split, seed: int
) -> dict[str, Any]:
    return dict(
        influence_method=settings.influence_method,
        train_loader_replacement=influence_loader(train, settings, seed),
        recursion_depth=settings.recursion_depth,
        hvp_batch_size=settings.hvp_batch_size,
        damping=settings.damping,
        scale=settings.scale,
        hessian_size=settings.hessian_size,
        arnoldi_iter=settings.arnoldi_iter,
        arnoldi_rank=settings.arnoldi_rank,
        seed=seed,
    )


def _simplex_options(settings: ExampleExplainerSettings, train: Split, seed: int) -> dict[str, Any]:
    return {"simplex_steps": settings.simplex_steps}


# The constructor options of each method that takes settings; TracIn (the model's own
# checkpoints and learning rate) and DKNN take none.
OPTIONS: dict[str, Callable[[ExampleExplainerSettings, Split, int], dict[str, Any]]] = {
    "InfluenceFunctions": _influence_options,
    "SimplEx": _simplex_options,
}


def build_explainer(
    method: str,
    model: nn.Module,
    settings: ExampleExplainerSettings,
    train: Split,
    seed: int,
) -> ExampleBasedExplainer:
    """The example explainer ``method`` of ``model`` with its options from ``settings``.

    Gradient methods differentiate the model's own training loss.

    Args:
        method: a name of ``EXAMPLE_METHODS``.
        model: the trained model (or, for the representation-based methods, an encoder).
        settings: the explainers' settings.
        train: the whole training split: InfluenceFunctions draws its Hessian batches from it.
        seed: the run's seed (InfluenceFunctions' Hessian batches and Arnoldi's start).
    """
    options = OPTIONS[method](settings, train, seed) if method in OPTIONS else {}
    return EXAMPLE_METHODS[method](model, **options)
