"""Pretext task sensitivity (paper Section 4.2): are explanations of different tasks alike?

Per run, encoders of one architecture are trained by several pretext tasks (Reconstruction,
Denoising, Inpainting, Classification and a Stacked Capsule Autoencoder), each in a nested
run, and registered. Each encoder is explained label-free on the same test images (one
feature attribution method; absolute importance, as in the reference) and the same
class-balanced training examples (one example importance method). The Pearson and Spearman
correlations between the tasks' explanations, averaged over runs, tell whether a model's
explanations depend on the task it was trained by. Labels only train the classifier.

Every explainer sees the images with the preprocessing the models trained with (pixels in
[0, 1]). The reference fed raw 0-255 pixels (``dataset.data``) to its example explainer while
its models trained on [0, 1]; ``example_pixels=raw`` reproduces that (the saliency is
unaffected), so both numbers can be shown side by side. ``pretrained=true``
reuses registered encoders instead of training (the representation-based example methods
only: a registered encoder carries no training loss to differentiate).

The SCAE trains with its own optimiser (RMSprop, paper lr 1e-5, batch 128, gradient norm
clipped at 5) and stops early on its test loss (the paper stopped on the unsupervised
capsule-to-label accuracy, which needs a clustering of the capsules per epoch).

References:
    Crabbé & van der Schaar, "Label-Free Explainability for Unsupervised Models", ICML 2022.
    Kosiorek et al., "Stacked Capsule Autoencoders", NeurIPS 2019.

Length (~420 lines): one experiment, its settings and the per-task training and explanation
it nests; the task models themselves are in :mod:`lfxai.experiments.pretext_models`.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from lfxai.config import BaseConfig, ConfigError, check_choices, check_positive
from lfxai.data.splits import Split
from lfxai.devices import get_device, seed_everything
from lfxai.experiments.common import load_splits, scratch_dir, tracked_fit
from lfxai.experiments.consistency_examples import balanced_subset
from lfxai.experiments.example_explainers import ExampleExplainerSettings, build_explainer
from lfxai.experiments.pretext_models import (
    TITLES,
    load_encoder,
    log_task_encoder,
    resolve_pretrained,
)
from lfxai.experiments.registry import register
from lfxai.experiments.verdicts import log_claims
from lfxai.explanations.examples import EXAMPLE_METHODS
from lfxai.explanations.features import FEATURE_METHODS, attribute_auxiliary, make_feature_method
from lfxai.metrics.correlation import (
    CORRELATIONS,
    correlation_matrix,
    correlation_table,
    latex_tables,
    off_diagonal_mean,
)
from lfxai.models.autoencoder import TrainableModel
from lfxai.models.registry import ModelSpec, build_model, training_defaults
from lfxai.models.scae import rmsprop_eps
from lfxai.plotting.heatmaps import correlation_heatmaps
from lfxai.plugins import DatasetPlugin
from lfxai.tracking import Tracker

EXPLANATIONS = ("features", "examples")
# What the example explainer's inputs are multiplied by: ``unit`` keeps the [0, 1] pixels the
# models trained on; ``raw`` gives 0-255 pixel values, as the reference's `dataset.data`.
EXAMPLE_PIXELS = {"unit": 1.0, "raw": 255.0}
# Example methods that differentiate the training loss: they need the whole trained model.
LOSS_BASED = ("InfluenceFunctions", "TracIn")


@dataclass(frozen=True)
class PretextConfig(ExampleExplainerSettings, BaseConfig):
    """Settings of ``pretext`` (values in ``configs/<dataset>.yaml``).

    ``pretrained_version``: ``latest`` (run r reuses the r-th newest version of each
    model), a version number or an alias (``paper``, ``quick``, ``smoke``: every run reuses
    that version). ``scae_*`` are the SCAE's own training settings. The example explainer's
    options are the composed :class:`ExampleExplainerSettings`.
    """

    patience: int
    split: str
    n_train: int | None
    n_test: int | None
    register_model: bool
    tasks: tuple[str, ...]
    n_runs: int
    feature_attr_method: str
    example_attr_method: str
    n_train_explained: int
    n_test_explained: int | None
    attribution_batch_size: int
    n_plots: int
    pretrained: bool
    pretrained_version: str
    checkpoint_every: int
    scae_n_epochs: int
    scae_lr: float
    scae_batch_size: int
    scae_n_train: int | None
    scae_patience: int
    example_pixels: str

    def validate(self) -> None:
        BaseConfig.validate(self)
        ExampleExplainerSettings.validate(self)
        check_choices("tasks", self.tasks, TITLES)
        check_choices("example_pixels", [self.example_pixels], EXAMPLE_PIXELS)
        if len(self.tasks) < 2:
            raise ConfigError(f"tasks needs at least two tasks to correlate, got {self.tasks}")
        check_choices("feature_attr_method", [self.feature_attr_method], FEATURE_METHODS)
        check_choices("example_attr_method", [self.example_attr_method], EXAMPLE_METHODS)
        if self.n_runs < 1:
            raise ConfigError(f"n_runs must be >= 1, got {self.n_runs}")
        check_positive(
            self,
            "n_train",
            "n_test",
            "n_train_explained",
            "n_test_explained",
            "attribution_batch_size",
            "n_plots",
            "scae_n_epochs",
            "scae_lr",
            "scae_batch_size",
            "scae_n_train",
        )
        if self.scae_patience < 0:  # patience: BaseConfig.validate checked it
            raise ConfigError(f"scae_patience must be >= 0, got {self.scae_patience}")
        if self.example_attr_method == "TracIn" and self.checkpoint_every <= 0:
            raise ConfigError(
                "TracIn needs checkpoint_every > 0 (checkpoints saved while training)"
            )
        if self.pretrained and self.example_attr_method in LOSS_BASED:
            raise ConfigError(
                f"pretrained=true cannot explain with {self.example_attr_method}: registered "
                "encoders carry no training loss (nor checkpoints) to differentiate; use "
                "example_attr_method DKNN or SimplEx, or pretrained=false"
            )
        if not self.pretrained_version:
            raise ConfigError("pretrained_version must be 'latest', a version number or an alias")


def new_task_model(
    dataset: DatasetPlugin, config: PretextConfig, task: str, shape: tuple[int, ...]
) -> TrainableModel:
    key, perturbation = dataset.pretext_tasks[task]
    model = build_model(key, ModelSpec(config.dim_latent, tuple(shape), perturbation, task))
    if task == "scae":  # its RMSprop eps depends on its batch size
        model.optimizer_options = {"eps": rmsprop_eps(config.scae_batch_size)}
    return model


def task_settings(dataset: DatasetPlugin, config: PretextConfig, task: str) -> PretextConfig:
    """The training settings of one task's model.

    A model the registry gives its own training (:func:`training_defaults`: the SCAE's
    RMSprop without weight decay) trains with it; the profile's ``scae_*`` settings then set
    its size (learning rate, batch, epochs, patience: smaller than the paper's in ``quick``).
    """
    defaults = training_defaults(dataset.pretext_tasks[task][0])
    if defaults is None:
        return config
    return dataclasses.replace(
        defaults.apply(config),
        lr=config.scae_lr,
        batch_size=config.scae_batch_size,
        n_epochs=config.scae_n_epochs,
        patience=config.scae_patience,
    )


@dataclass
class _Explained:
    """One run's shared data: the splits and the explained subsets (same for every task)."""

    train: Split
    test: Split
    explained_train: Split
    explained_test: Split


def _explain_task(
    dataset: DatasetPlugin,
    config: PretextConfig,
    parent: Tracker,
    run: int,
    task: str,
    data: _Explained,
    device: torch.device,
    reused: tuple[str, nn.Module] | None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """One nested run: train (or reuse) a task's encoder and explain it.

    Returns:
        Absolute feature importance ``(n_test, ...)``, example importance
        ``(n_test, n_train_explained)`` and the encoder's model URI.
    """
    with parent.nested(f"run{run}-{task}") as child:
        child.set_tags({"lfxai.pretext.task": task, "lfxai.pretext.run": run})
        child.log_params(
            {
                "task": task,
                "run": run,
                "model": dataset.pretext_tasks[task][0],
                "source": "registry" if reused else "trained",
            }
        )
        checkpoints = scratch_dir()
        try:
            if reused is None:
                settings = task_settings(dataset, config, task)
                model = new_task_model(dataset, config, task, tuple(data.train.x.shape[1:]))
                train = data.train.head(config.scae_n_train) if task == "scae" else data.train
                every = config.checkpoint_every if config.example_attr_method == "TracIn" else 0
                training = settings.training(checkpoint_every=every)
                fitted = tracked_fit(
                    model, training, device, child, train, data.test, checkpoint_dir=checkpoints
                )
                example = data.test.x[:2]
                uri = log_task_encoder(
                    child, dataset, settings, task, model, example, fitted.best_test_loss
                )
                model.to(device).eval()
                encoder, explained = model.encoder, model
            else:
                uri, encoder = reused
                encoder = encoder.to(device).eval()
                explained = encoder  # representation-based explainers use it directly
                child.log_params({"model_uri": uri})
            child.set_tags({"lfxai.encoder_uri": uri})
            return (*_explanations(dataset, config, child, data, encoder, explained, device), uri)
        finally:
            shutil.rmtree(checkpoints, ignore_errors=True)


def _explanations(
    dataset: DatasetPlugin,
    config: PretextConfig,
    tracker: Tracker,
    data: _Explained,
    encoder: nn.Module,
    model: nn.Module,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """Label-free feature and example importance of one encoder, logged as arrays."""
    batch = config.attribution_batch_size
    start = time.perf_counter()
    method = make_feature_method(config.feature_attr_method, encoder, seed=config.seed)
    saliency = attribute_auxiliary(
        encoder, data.explained_test.loader(batch), device, method, dataset.baseline(data.train)
    )
    saliency = np.abs(saliency)  # importance magnitude, as the reference compares them
    middle = time.perf_counter()
    scale = EXAMPLE_PIXELS[config.example_pixels]
    # Influence functions draw their Hessian batches from the whole training split: scale it
    # too (a copy), so every input the explainer sees is on the same scale.
    hessian = config.example_attr_method == "InfluenceFunctions"
    train = scaled_inputs(data.train, scale) if hessian else data.train
    explainer = build_explainer(config.example_attr_method, model, config, train, config.seed)
    importance = explainer.attribute_loader(
        device,
        scaled_inputs(data.explained_train, scale).loader(batch),
        scaled_inputs(data.explained_test, scale).loader(batch),
    ).numpy()
    tracker.log_metrics(
        {
            "time/feature_attribution_seconds": middle - start,
            "time/example_attribution_seconds": time.perf_counter() - middle,
        }
    )
    tracker.log_array(saliency, f"attributions/{config.feature_attr_method}.npy")
    tracker.log_array(importance, f"example_importance/{config.example_attr_method}.npy")
    return saliency, importance


def scaled_inputs(split: Split, scale: float) -> Split:
    """``split`` with its inputs multiplied by ``scale`` (the split itself when 1)."""
    return split if scale == 1.0 else Split(split.x * scale, split.y)


def _plot_indices(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Up to ``n`` positions: the first example of each class, then the next ones."""
    first = torch.stack([torch.nonzero(labels == c)[0, 0] for c in torch.unique(labels)])
    others = torch.ones(len(labels), dtype=torch.bool)
    others[first] = False
    return torch.cat([first, torch.nonzero(others).flatten()])[:n]


def _run_figures(
    dataset: DatasetPlugin,
    tracker: Tracker,
    data: _Explained,
    tasks: list[str],
    saliency: list[np.ndarray],
    importance: list[np.ndarray],
    n_plots: int,
) -> None:
    """Saliency maps and top training examples of a few test images, one row per task."""
    index = _plot_indices(data.explained_test.y, n_plots)
    images = data.explained_test.x[index]
    titles = [TITLES[t] for t in tasks]
    maps = [s[index.numpy()] for s in saliency]
    figure = dataset.example_figure(images, maps, titles, "Label-free saliency per pretext task")
    tracker.log_figure(figure, "pretext_saliency")
    tops = [
        data.explained_train.x[torch.from_numpy(i[index.numpy()].argmax(1))] for i in importance
    ]
    top_maps = [t.numpy() for t in tops]
    figure = dataset.example_figure(images, top_maps, titles, "Top training example per task")
    tracker.log_figure(figure, "pretext_top_examples")


@register("pretext", PretextConfig)
def pretext(dataset: DatasetPlugin, config: PretextConfig, tracker: Tracker) -> dict[str, float]:
    """Correlations between the explanations of encoders trained by different pretext tasks.

    Returns:
        Per explanation kind and correlation, the mean off-diagonal correlation.
    """
    seed_everything(config.seed)
    device = get_device(config.device)
    unknown = [t for t in config.tasks if t not in dataset.pretext_tasks]
    if unknown:
        raise ConfigError(
            f"unknown tasks entry {unknown[0]!r} for dataset {dataset.name!r}; valid "
            f"choices: {sorted(dataset.pretext_tasks)}"
        )
    splits = load_splits(dataset, config, tracker)
    train, test = splits.train, splits.explain
    n_test = len(test) if config.n_test_explained is None else config.n_test_explained
    if n_test > len(test):
        raise ConfigError(f"n_test_explained={n_test} but the test split has {len(test)} examples")
    tasks, shape = list(config.tasks), tuple(train.x.shape[1:])
    dim_latent = {t: new_task_model(dataset, config, t, shape).latent_dim for t in tasks}
    reused: list[dict[str, tuple[str, nn.Module]]] = [{} for _ in range(config.n_runs)]
    if config.pretrained:  # every model is found and checked before any work
        for run, uris in enumerate(resolve_pretrained(tracker, dataset, config, dim_latent)):
            for task, uri in uris.items():
                reused[run][task] = (uri, load_encoder(uri, test.x[:1], dim_latent[task]))

    matrices = {
        (e, c): np.zeros((config.n_runs, len(tasks), len(tasks)))
        for e in EXPLANATIONS
        for c in CORRELATIONS
    }
    used = []
    for run in range(config.n_runs):
        generator = torch.Generator().manual_seed(config.seed + run)
        train_idx = balanced_subset(train.y, config.n_train_explained, generator)
        test_idx = torch.randperm(len(test), generator=generator)[:n_test]
        tracker.log_array(train_idx, f"subsets/run{run}/train_idx.npy")
        tracker.log_array(test_idx, f"subsets/run{run}/test_idx.npy")
        data = _Explained(train, splits.test, train.subset(train_idx), test.subset(test_idx))
        saliency, importance = [], []
        for task in tasks:
            sal, imp, uri = _explain_task(
                dataset, config, tracker, run, task, data, device, reused[run].get(task)
            )
            saliency.append(sal)
            importance.append(imp)
            used.append({"run": run, "task": task, "model_uri": uri, "reused": config.pretrained})
        stacked = {"features": np.stack(saliency), "examples": np.stack(importance)}
        rows = []
        for (explanation, correlation), runs in matrices.items():
            runs[run] = correlation_matrix(stacked[explanation], correlation)
            key = f"per_run/{explanation}/{correlation}/off_diagonal_mean"
            rows.append((key, off_diagonal_mean(runs[run]), run))
        tracker.log_metric_rows(rows)
        if run == 0:
            _run_figures(dataset, tracker, data, tasks, saliency, importance, config.n_plots)
        del saliency, importance, stacked

    models = pd.DataFrame(used)
    tracker.log_table(models, "pretext_models.csv")
    tracker.set_tags({"lfxai.pretext.models_used": " ".join(models.model_uri)})
    return _summarise(tracker, matrices, tasks)


def _summarise(
    tracker: Tracker, matrices: dict[tuple[str, str], np.ndarray], tasks: list[str]
) -> dict[str, float]:
    """Logs the correlation tables, figures, metrics and claims; returns the summary."""
    table = correlation_table(matrices, tasks)
    tracker.log_table(table, "pretext_correlations.csv")
    tracker.log_text(latex_tables(table, tasks, TITLES), "pretext_correlations.tex")
    for (explanation, correlation), runs in matrices.items():
        tracker.log_array(runs, f"correlations/{explanation}_{correlation}.npy")
    panels = {
        f"{e.removesuffix('s')} importance, {c.capitalize()}": (runs.mean(0), runs.std(0))
        for (e, c), runs in matrices.items()
    }
    titles = [TITLES[t] for t in tasks]
    figure = correlation_heatmaps(panels, titles, "Correlation between pretext tasks")
    tracker.log_figure(figure, "pretext_correlations")
    metrics = {}
    for row in table.itertuples():
        i, j = tasks.index(row.task_a), tasks.index(row.task_b)
        if i < j:
            key = f"{row.explanation}/{row.correlation}/{row.task_a}-{row.task_b}"
            metrics[f"{key}/mean"], metrics[f"{key}/std"] = row.mean, row.std
    summary = {
        f"{e}/{c}/off_diagonal_mean": off_diagonal_mean(runs.mean(0))
        for (e, c), runs in matrices.items()
    }
    tracker.log_metrics({**metrics, **summary})
    evidence = {f"{e}_{c}": runs for (e, c), runs in matrices.items()}  # per run: tested
    log_claims(tracker, "pretext", table, "Pretext task sensitivity", evidence)
    return summary
