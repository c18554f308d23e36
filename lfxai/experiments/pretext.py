"""Pretext task sensitivity (paper Section 4.2): are explanations of different tasks alike?

Per run, encoders of one architecture are trained by several pretext tasks (Reconstruction,
Denoising, Inpainting, Classification and a Stacked Capsule Autoencoder), each in a nested
run, and registered. Each encoder is explained label-free on the same test images (one
feature attribution method; absolute importance, as in the reference) and the same
class-balanced training examples (one example importance method). The Pearson and Spearman
correlations between the tasks' explanations, averaged over runs, tell whether a model's
explanations depend on the task it was trained by. Labels only train the classifier.

Every explainer sees the images with the preprocessing the models trained with (pixels in
[0, 1]); the reference fed raw 0-255 pixels to its example explainers. ``pretrained=true``
reuses registered encoders instead of training (the representation-based example methods
only: a registered encoder carries no training loss to differentiate).

The SCAE trains with its own optimiser (RMSprop, paper lr 1e-5, batch 128, gradient norm
clipped at 5) and stops early on its test loss (the paper stopped on the unsupervised
capsule-to-label accuracy, which needs a clustering of the capsules per epoch).

References:
    Crabbé & van der Schaar, "Label-Free Explainability for Unsupervised Models", ICML 2022.
    Kosiorek et al., "Stacked Capsule Autoencoders", NeurIPS 2019.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from torch import nn

from lfxai.config import BaseConfig, ConfigError, check_choices, check_positive
from lfxai.data.splits import Split
from lfxai.experiments.common import (
    load_splits,
    log_claims,
    registered_name,
    scratch_dir,
    tracked_fit,
)
from lfxai.experiments.consistency_examples import _influence_loader, balanced_subset
from lfxai.experiments.registry import register
from lfxai.explanations.examples import EXAMPLE_METHODS
from lfxai.explanations.examples.influence_functions import METHODS as INFLUENCE_METHODS
from lfxai.explanations.features import FEATURE_METHODS, attribute_auxiliary, make_feature_method
from lfxai.models.autoencoder import TrainableModel
from lfxai.models.registry import ModelSpec, build_model
from lfxai.models.scae import rmsprop_eps
from lfxai.plotting.heatmaps import correlation_heatmaps
from lfxai.plugins import DatasetPlugin
from lfxai.tracking import Tracker
from lfxai.training import get_device, seed_everything

TITLES = {
    "reconstruction": "Reconstruction",
    "denoising": "Denoising",
    "inpainting": "Inpainting",
    "classification": "Classification",
    "scae": "SCAE",
}
EXPLANATIONS = ("features", "examples")
CORRELATIONS = ("pearson", "spearman")
# Example methods that differentiate the training loss: they need the whole trained model.
LOSS_BASED = ("InfluenceFunctions", "TracIn")


@dataclass(frozen=True)
class PretextConfig(BaseConfig):
    """Settings of ``pretext`` (values in ``configs/<dataset>.yaml``).

    ``pretrained_version``: ``latest`` (run r reuses the r-th newest version of each
    model), a version number or an alias (``paper``, ``quick``, ``smoke``: every run reuses
    that version). ``scae_*`` are the SCAE's own training settings.
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
        super().validate()
        check_choices("tasks", self.tasks, TITLES)
        if len(self.tasks) < 2:
            raise ConfigError(f"tasks needs at least two tasks to correlate, got {self.tasks}")
        check_choices("feature_attr_method", [self.feature_attr_method], FEATURE_METHODS)
        check_choices("example_attr_method", [self.example_attr_method], EXAMPLE_METHODS)
        check_choices("influence_method", [self.influence_method], INFLUENCE_METHODS)
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
            "recursion_depth",
            "hvp_batch_size",
            "hessian_size",
            "arnoldi_iter",
            "arnoldi_rank",
            "simplex_steps",
        )
        if self.patience < 0 or self.scae_patience < 0:
            raise ConfigError("patience and scae_patience must be >= 0")
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


def model_name(dataset: DatasetPlugin, task: str, latent: int) -> str:
    """Registered name of a task's encoder: ``lfxai-mnist-denoising-ae-d4`` (the name the
    other experiments register their autoencoders under), ``lfxai-mnist-classification-d4``,
    ``lfxai-mnist-scae-d3456``."""
    suffix = "-ae" if dataset.pretext_tasks[task][0] == dataset.model else ""
    return registered_name(dataset.name, f"{task}{suffix}-d{latent}")


def new_task_model(
    dataset: DatasetPlugin, config: PretextConfig, task: str, shape: tuple[int, ...]
) -> TrainableModel:
    key, perturbation = dataset.pretext_tasks[task]
    model = build_model(key, ModelSpec(config.dim_latent, tuple(shape), perturbation, task))
    if task == "scae":  # its RMSprop eps depends on its batch size
        model.optimizer_options = {"eps": rmsprop_eps(config.scae_batch_size)}
    return model


def task_settings(config: PretextConfig, task: str) -> PretextConfig:
    """The training settings of one task: the SCAE has its own optimiser and schedule."""
    if task != "scae":
        return config
    return dataclasses.replace(
        config,
        optimizer="rmsprop",
        lr=config.scae_lr,
        weight_decay=0.0,
        batch_size=config.scae_batch_size,
        n_epochs=config.scae_n_epochs,
        patience=config.scae_patience,
    )


# -- correlations ----------------------------------------------------------------------------
def correlation_matrix(maps: np.ndarray, method: str) -> np.ndarray:
    """Correlations ``(T, T)`` between the flattened explanations of T tasks.

    Args:
        maps: ``(T, ...)``, one explanation array per task (same examples, same order).
        method: ``pearson`` or ``spearman`` (Pearson of average ranks, ties included).
    """
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    if method == "spearman":
        flat = rankdata(flat, axis=1)
    elif method != "pearson":
        raise ValueError(f"unknown correlation {method!r}; valid choices: {list(CORRELATIONS)}")
    flat = flat - flat.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        flat = flat / np.linalg.norm(flat, axis=1, keepdims=True)  # a constant map gives NaN
        return np.clip(flat @ flat.T, -1.0, 1.0)


def correlation_table(
    matrices: dict[tuple[str, str], np.ndarray], tasks: list[str]
) -> pd.DataFrame:
    """Long table of mean and std over runs, one row per (explanation, correlation, pair).

    Args:
        matrices: ``(explanation, correlation)`` -> ``(n_runs, T, T)``.
        tasks: the T task names.
    """
    rows = []
    for (explanation, correlation), runs in matrices.items():
        mean, std = runs.mean(axis=0), runs.std(axis=0)
        for i, a in enumerate(tasks):
            for j, b in enumerate(tasks):
                rows.append(
                    {
                        "explanation": explanation,
                        "correlation": correlation,
                        "task_a": a,
                        "task_b": b,
                        "mean": float(mean[i, j]),
                        "std": float(std[i, j]),
                        "n_runs": len(runs),
                    }
                )
    return pd.DataFrame(rows)


def latex_tables(table: pd.DataFrame, tasks: list[str]) -> str:
    """One LaTeX tabular per (explanation, correlation), cells ``mean \\pm std``."""
    out = []
    for (explanation, correlation), part in table.groupby(
        ["explanation", "correlation"], sort=False
    ):
        cells = part.set_index(["task_a", "task_b"])
        header = " & ".join(TITLES[t] for t in tasks)
        lines = [
            "\\begin{table}[h]",
            "\\centering",
            f"\\caption{{{correlation.capitalize()} correlation of label-free {explanation} "
            "importance between pretext tasks (mean $\\pm$ std over runs)}",
            "\\begin{tabular}{l" + "c" * len(tasks) + "}",
            "\\toprule",
            f" & {header} \\\\",
            "\\midrule",
        ]
        for a in tasks:
            values = [cells.loc[(a, b)] for b in tasks]
            row = " & ".join(f"${v['mean']:.2f} \\pm {v['std']:.2f}$" for v in values)
            lines.append(f"{TITLES[a]} & {row} \\\\")
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
        out.append("\n".join(lines))
    return "\n".join(out)


def off_diagonal_mean(matrix: np.ndarray) -> float:
    mask = ~np.eye(len(matrix), dtype=bool)
    return float(np.nanmean(matrix[mask]))


# -- models: trained or reused -----------------------------------------------------------------
def resolve_pretrained(
    tracker: Tracker, dataset: DatasetPlugin, config: PretextConfig, latents: dict[str, int]
) -> list[dict[str, str]]:
    """Per run, ``task -> models:/<name>/<version>`` of the registered encoders to reuse.

    Raises:
        ConfigError: a model is not registered, has too few versions for ``latest``, or
            lacks the version or alias asked for (each named, with what exists).
    """
    wanted = config.pretrained_version
    chosen: list[dict[str, str]] = [{} for _ in range(config.n_runs)]
    for task in config.tasks:
        name = model_name(dataset, task, latents[task])
        versions = tracker.model_versions(name)
        if not versions:
            known = tracker.registered_models(registered_name(dataset.name, ""))
            raise ConfigError(
                f"pretrained=true but no registered model {name!r} (task {task}); train it "
                f"first with pretrained=false. Registered lfxai models: {known}"
            )
        if wanted == "latest":
            if len(versions) < config.n_runs:
                raise ConfigError(
                    f"pretrained_version=latest reuses the {config.n_runs} newest versions of "
                    f"{name!r} (one per run) but it has {len(versions)}; pass n_runs="
                    f"{len(versions)}, a version number or an alias"
                )
            picks = [str(v.version) for v in versions[: config.n_runs]]
        elif wanted.isdigit():
            numbers = [str(v.version) for v in versions]
            if wanted not in numbers:
                raise ConfigError(
                    f"registered model {name!r} has no version {wanted}; valid: {numbers}"
                )
            picks = [wanted] * config.n_runs
        else:
            version = tracker.model_version_by_alias(name, wanted)
            if version is None:
                raise ConfigError(
                    f"registered model {name!r} has no alias {wanted!r}; valid aliases: "
                    f"{tracker.model_aliases(name)} (or 'latest', or a version number)"
                )
            picks = [str(version.version)] * config.n_runs
        for run, version in enumerate(picks):
            chosen[run][task] = f"models:/{name}/{version}"
    return chosen


def load_encoder(tracker: Tracker, uri: str, example: torch.Tensor, latent: int) -> nn.Module:
    """A registered encoder, checked on one example: inputs accepted, codes of size ``latent``."""
    encoder = tracker.load_model(uri).eval()
    try:
        with torch.no_grad():
            codes = encoder(example.cpu())
    except Exception as error:  # any failure here means the model does not fit the data
        shape = tuple(example.shape[1:])
        raise ConfigError(
            f"registered model {uri} is incompatible: it does not accept inputs of shape "
            f"{shape} ({type(error).__name__}: {error})"
        ) from None
    if codes.dim() != 2 or codes.shape[1] != latent:
        raise ConfigError(
            f"registered model {uri} is incompatible: its codes have shape "
            f"{tuple(codes.shape[1:])}, this run needs ({latent},)"
        )
    return encoder


def log_task_encoder(
    tracker: Tracker,
    dataset: DatasetPlugin,
    config: PretextConfig,
    task: str,
    model: TrainableModel,
    example: torch.Tensor,
    test_loss: float,
) -> str:
    """Logs a task's trained encoder; with ``register_model``, registers and describes it.

    The version gets the alias of its profile (``@paper``, ``@quick``, ``@smoke``), which
    ``pretrained_version=<profile>`` reuses.

    Returns:
        The model URI (``models:/<name>/<version>`` when registered).
    """
    name = model_name(dataset, task, model.latent_dim) if config.register_model else None
    uri = tracker.log_model(model.encoder, "encoder", example, registered_model_name=name)
    if name is None or not uri.startswith(f"models:/{name}/"):
        return uri
    tags = tracker.tags()
    profile = tags.get("lfxai.profile", "?")
    shape = ", ".join(str(n) for n in example.shape[1:])
    model_description = (
        f"Encoder of the {dataset.title} model trained by the pretext task {TITLES[task]} "
        f"(lfxai's `pretext` experiment): inputs (N, {shape}) to codes (N, {model.latent_dim}). "
        f"A plain torch.nn.Module: `mlflow.pytorch.load_model('models:/{name}@paper')` loads "
        "the newest version of the paper profile (aliases @paper, @quick, @smoke)."
    )
    version_description = (
        f"pretext ({profile} profile), run '{tags.get('mlflow.runName', tracker.run_id)}' "
        f"({tracker.run_id}). Test loss {test_loss:.6g}; n_epochs={config.n_epochs}, "
        f"seed={config.seed}."
    )
    version_tags = {
        "lfxai.dataset": dataset.name,
        "lfxai.experiment": "pretext",
        "lfxai.profile": profile,
        "lfxai.pretext": task,
        "lfxai.dim_latent": model.latent_dim,
        "test_loss": f"{test_loss:.6g}",
    }
    version = uri.rsplit("/", 1)[1]
    tracker.annotate_model_version(
        name, version, model_description, version_description, version_tags, alias=profile
    )
    return uri


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
                settings = task_settings(config, task)
                model = new_task_model(dataset, config, task, tuple(data.train.x.shape[1:]))
                train = data.train.head(config.scae_n_train) if task == "scae" else data.train
                every = config.checkpoint_every if config.example_attr_method == "TracIn" else 0
                fitted = tracked_fit(
                    model,
                    settings,
                    child,
                    train,
                    data.test,
                    patience=settings.patience,
                    checkpoint_every=every,
                    checkpoint_dir=checkpoints,
                )
                example = data.test.x[:1]
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
    explainer = EXAMPLE_METHODS[config.example_attr_method](model)
    options = dict(
        influence_method=config.influence_method,
        train_loader_replacement=_influence_loader(data.train, config, config.seed),
        recursion_depth=config.recursion_depth,
        hvp_batch_size=config.hvp_batch_size,
        damping=config.damping,
        scale=config.scale,
        hessian_size=config.hessian_size,
        arnoldi_iter=config.arnoldi_iter,
        arnoldi_rank=config.arnoldi_rank,
        seed=config.seed,
        simplex_steps=config.simplex_steps,
    )
    importance = explainer.attribute_loader(
        device, data.explained_train.loader(batch), data.explained_test.loader(batch), **options
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
    latents = {t: new_task_model(dataset, config, t, shape).latent_dim for t in tasks}
    reused: list[dict[str, tuple[str, nn.Module]]] = [{} for _ in range(config.n_runs)]
    if config.pretrained:  # every model is found and checked before any work
        for run, uris in enumerate(resolve_pretrained(tracker, dataset, config, latents)):
            for task, uri in uris.items():
                reused[run][task] = (uri, load_encoder(tracker, uri, test.x[:1], latents[task]))

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
    tracker.log_text(latex_tables(table, tasks), "pretext_correlations.tex")
    for (explanation, correlation), runs in matrices.items():
        tracker.log_array(runs, f"correlations/{explanation}_{correlation}.npy")
    panels = {
        f"{e} importance, {c.capitalize()}": (runs.mean(0), runs.std(0))
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
    log_claims(tracker, "pretext", table, "Pretext task sensitivity")
    return summary
