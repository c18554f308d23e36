"""Does disentanglement make latent units explain different features (paper Section 4.3)?

Train Burgess VAEs with the beta-VAE and beta-TC-VAE objectives for several beta, explain
each latent unit of the encoder mean separately with GradientShap
(:func:`~lfxai.explanations.features.attribute_individual_dim`) and measure how much the
units' saliency maps overlap (:mod:`lfxai.metrics.disentanglement`). The paper found that the
correlation between units does not fall as beta grows.

:func:`train_and_measure` (one model, one nested run) is the unit of work: the parent run
here loops it over loss x beta x run, and the Optuna sweep calls it once per trial.

References:
    Crabbé & van der Schaar, "Label-Free Explainability for Unsupervised Models", ICML 2022.
"""

from __future__ import annotations

import math
import time
import typing
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from lfxai.config import BaseConfig, ConfigError, check_choices, check_positive
from lfxai.devices import get_device, seed_everything
from lfxai.experiments.common import load_splits, tracked_fit
from lfxai.experiments.registry import register
from lfxai.experiments.verdicts import log_claims
from lfxai.explanations.features import attribute_individual_dim, make_feature_method
from lfxai.metrics.disentanglement import SALIENCY_METRICS, saliency_metrics
from lfxai.models.registry import ModelSpec, build_model
from lfxai.models.vae import VAE, VAE_LOSSES
from lfxai.plotting.disentanglement import close, loss_term_curves, metric_box_plots
from lfxai.plugins import DatasetPlugin, Splits
from lfxai.tracking import ENCODER_URI_TAG, Tracker, registered_name
from lfxai.training import EpochCallback

SWEEP = "sweep"  # lfxai.experiment of a sweep's trial runs (lfxai.cli.sweep.EXPERIMENT)

MODEL = "burgess_vae"  # the registry key of the VAEs (lfxai.models.registry)
FEATURE_METHOD = "GradientShap"  # a feature method (FEATURE_METHODS), per latent unit
N_EXAMPLES = 6  # explained examples drawn with their per-unit saliency maps
N_SAVED = 100  # explained examples whose saliency maps are logged as an array
TAG = "lfxai.disvae."  # prefix of the nested runs' tags (loss, beta, run)


@dataclass(frozen=True)
class DisvaeConfig(BaseConfig):
    """Settings of ``disvae`` (values in ``configs/<dataset>.yaml``).

    ``n_explained`` test images (a prefix of the explained split) are explained per model;
    ``n_runs`` models per (loss, beta), run ``r`` seeded with ``seed + r``.
    """

    split: str
    n_train: int | None
    n_test: int | None
    n_explained: int
    beta_list: tuple[float, ...]
    loss_list: tuple[str, ...]
    n_runs: int
    patience: int
    attribution_batch_size: int
    register_model: bool

    def validate(self) -> None:
        """Raises :class:`ConfigError` naming the bad value and the valid choices."""
        super().validate()
        check_choices("loss_list", self.loss_list, VAE_LOSSES)
        if not self.beta_list:
            raise ConfigError("beta_list must not be empty; give betas >= 0, e.g. 1,5,10")
        for beta in self.beta_list:
            if not (math.isfinite(beta) and beta >= 0):
                raise ConfigError(f"beta_list entry {beta} is not a finite beta >= 0")
        if len(set(self.beta_list)) != len(self.beta_list):
            raise ConfigError(f"beta_list lists a beta more than once: {list(self.beta_list)}")
        if self.n_runs < 1:
            raise ConfigError(f"n_runs must be >= 1, got {self.n_runs}")
        if self.dim_latent < 2:
            raise ConfigError(
                f"dim_latent must be >= 2 for disvae (its metrics compare latent units), "
                f"got {self.dim_latent}"
            )
        check_positive(self, "n_train", "n_test", "n_explained", "attribution_batch_size")


@dataclass(frozen=True)
class VaeTrial:
    """One model of the study: its objective, beta, latent size and run (seed offset)."""

    loss: str
    beta: float
    dim_latent: int
    run: int = 0

    @property
    def name(self) -> str:
        """The nested run's name, e.g. ``beta_tc_vae-beta5-run0``."""
        return f"{self.loss}-beta{self.beta:g}-run{self.run}"


def load_vae_splits(
    dataset: DatasetPlugin, config: DisvaeConfig, tracker: Tracker | None
) -> Splits:
    """The splits every trial trains on, loaded once (logged as ``tracker``'s run's inputs).

    The explained split is cut to ``n_explained`` examples here.

    Raises:
        ConfigError: ``n_explained`` exceeds the explained split.
    """
    splits = load_splits(dataset, config, tracker)  # type: ignore[arg-type]  (duck-typed)
    if config.n_explained > len(splits.explain):
        raise ConfigError(
            f"n_explained={config.n_explained} exceeds the {len(splits.explain)} examples of "
            f"the explained split; choose n_explained <= {len(splits.explain)}"
        )
    return Splits(splits.train, splits.test, splits.explain.head(config.n_explained))


@dataclass
class TrialResult:
    """What one trial produced besides its metrics: curves and a few saliency maps."""

    metrics: dict[str, float]
    history: pd.DataFrame
    saliency: np.ndarray  # (N_EXAMPLES, d, ...) of the first explained examples


def train_and_measure(
    dataset: DatasetPlugin,
    config: DisvaeConfig,
    tracker: Tracker,
    trial: VaeTrial,
    splits: Splits,
    on_epoch: EpochCallback | None = None,
) -> dict[str, float]:
    """Trains one VAE, explains its latent units and measures them, logging into ``tracker``.

    The caller opens the run (normally ``tracker.nested(trial.name)``), which must be the
    active run (the encoder is logged as an MLflow model). Logged: the trial as params,
    ``fit/{train,test}_{loss,reconstruction,kl,...}`` per epoch, the final metrics, the
    loss-term curves, the saliency maps of a few examples (figure and array), the codes of
    the explained examples and the encoder (registered as ``lfxai-<dataset>-<loss>-d<d>``
    when ``register_model``, the trial in the version's tags).

    Args:
        dataset: the data set's plugin (baseline, figures, factor scores).
        config: the resolved settings (optimiser, epochs, batch, patience, attribution).
        tracker: the run to log to.
        trial: loss, beta, latent size and run; the seed is ``config.seed + trial.run``.
        splits: from :func:`load_vae_splits`.
        on_epoch: called after every epoch as ``on_epoch(epoch, metrics)`` with
            ``test_loss``, ``test_reconstruction``, ``test_kl`` (and the beta-TC-VAE terms),
            and the same ``train_*`` values; whatever it raises (e.g. ``optuna.TrialPruned``)
            propagates unchanged, the run then ending FAILED through ``tracker.nested``.

    Returns:
        ``pearson``, ``spearman``, ``cosine``, ``entropy``, ``active_units``,
        ``test_loss``, ``test_reconstruction``, ``best_epoch`` and the data set's factor
        scores (e.g. ``mig``).
    """
    return _run_trial(dataset, config, tracker, trial, splits, on_epoch).metrics


def _run_trial(
    dataset: DatasetPlugin,
    config: DisvaeConfig,
    tracker: Tracker,
    trial: VaeTrial,
    splits: Splits,
    on_epoch: EpochCallback | None = None,
) -> TrialResult:
    seed = config.seed + trial.run
    seed_everything(seed)
    device = get_device(config.device)
    train, test, explain = splits.train, splits.test, splits.explain
    tracker.set_tags(
        {TAG + "loss": trial.loss, TAG + "beta": f"{trial.beta:g}", TAG + "run": trial.run}
    )
    tracker.log_params(
        {
            "loss": trial.loss,
            "beta": f"{trial.beta:g}",
            "dim_latent": trial.dim_latent,
            "run": trial.run,
            "trial_seed": seed,
            "dataset_size": len(train),
        },
        prefix="trial.",
    )
    spec = ModelSpec(trial.dim_latent, tuple(train.x.shape[1:]), name=trial.name)
    options = {"loss": trial.loss, "beta": trial.beta, "dataset_size": len(train)}
    model = typing.cast(VAE, build_model(MODEL, spec, **options))

    rows: list[dict[str, float]] = []
    with model.recording_terms() as recorder:

        def log_terms(epoch: int, _losses: dict[str, float]) -> None:
            terms = recorder.pop()  # this epoch's train and test terms
            rows.append({"epoch": epoch, **terms})
            tracker.log_metrics({f"fit/{k}": v for k, v in terms.items()}, step=epoch)
            if on_epoch is not None:
                on_epoch(epoch, dict(terms))

        training = config.training(seed=seed)  # each run shuffles with its own seed
        fitted = tracked_fit(model, training, device, tracker, train, test, log_epoch=log_terms)
    history = pd.DataFrame(rows)
    best = history.iloc[fitted.best_epoch]
    _log_figure(tracker, loss_term_curves(history, _title(dataset, trial)), "loss_terms")

    encoder = model.encoder.to(device).eval()
    saliency = _unit_saliency(dataset, config, tracker, encoder, trial.dim_latent, splits, device)
    metrics = saliency_metrics(saliency)
    metrics |= {
        "test_loss": fitted.best_test_loss,  # the restored best epoch's (fit's own figure)
        "test_reconstruction": float(best["test_reconstruction"]),
        "best_epoch": float(fitted.best_epoch),
    }
    metrics |= dataset.factor_scores(encoder, splits, str(device))
    tracker.log_metrics(metrics)
    _log_encoder(dataset, config, tracker, trial, model, explain.x[:2], fitted.best_test_loss)
    return TrialResult(metrics, history, saliency[:N_EXAMPLES])


def _unit_saliency(
    dataset: DatasetPlugin,
    config: DisvaeConfig,
    tracker: Tracker,
    encoder: torch.nn.Module,
    dim_latent: int,
    splits: Splits,
    device: torch.device,
) -> np.ndarray:
    """``|f_j(x) * GradientShap_j(x)|`` of every unit on the explained split, logged."""
    explain = splits.explain
    method = make_feature_method(FEATURE_METHOD, encoder, seed=config.seed)
    start = time.perf_counter()
    saliency = attribute_individual_dim(
        encoder,
        dim_latent,
        explain.loader(config.attribution_batch_size),
        device,
        method,
        dataset.baseline(splits.train),
    )
    seconds = time.perf_counter() - start
    tracker.log_metrics(
        {
            "time/attribution_seconds": seconds,
            "throughput/unit_attribution_images_per_second": len(saliency) / seconds,
        }
    )
    with torch.no_grad():
        codes = torch.cat([encoder(x.to(device)).cpu() for x in explain.x.split(1000)])
    tracker.log_array(codes, "codes/explained.npy")  # lets a reloaded encoder be checked
    tracker.log_array(saliency[:N_SAVED], "saliency/units.npy")
    d = saliency.shape[1]
    examples = explain.x[:N_EXAMPLES]
    maps = [saliency[:N_EXAMPLES, j : j + 1] for j in range(d)]
    title = f"|f_j(x) x {FEATURE_METHOD}_j(x)| per latent unit j"
    figure = dataset.example_figure(examples, maps, [f"unit {j}" for j in range(d)], title)
    _log_figure(tracker, figure, "saliency_units")
    return saliency


def registered_vae_name(dataset: str, loss: str, dim_latent: int) -> str:
    """One registered model per (data set, loss, latent size), e.g. ``lfxai-mnist-beta-tc-vae-d3``.

    Beta and run are the versions' tags.
    """
    return registered_name(dataset, loss, dim_latent)


def _log_encoder(
    dataset: DatasetPlugin,
    config: DisvaeConfig,
    tracker: Tracker,
    trial: VaeTrial,
    model: VAE,
    example: torch.Tensor,
    test_loss: float,
) -> str:
    """Logs the encoder (mean head) and, with ``register_model``, registers and tags it.

    The version gets the alias ``<profile>-beta<beta>`` (``paper-beta5``): the newest
    encoder of that profile and beta. A sweep's trial (beta drawn from a range) gets none:
    one alias per trial would bury the registry; the sweep tags its best trials' versions
    ``lfxai.pareto_optimal`` instead.
    """
    name = registered_vae_name(dataset.name, trial.loss, trial.dim_latent)
    shape = ", ".join(str(n) for n in example.shape[1:])
    about = (
        f"Encoder mean of the {dataset.title} Burgess VAE trained with {trial.loss} and a "
        f"{trial.dim_latent}-dimensional latent space: inputs (N, {shape}) to means "
        f"(N, {trial.dim_latent}). Versions differ by beta and run (their tags); the alias "
        "`<profile>-beta<beta>` (e.g. `@paper-beta5`) is the newest of that profile and beta."
    )
    details = f"{trial.loss}, beta={trial.beta:g}, run {trial.run}"
    tags = {
        "lfxai.loss": trial.loss,
        "lfxai.beta": f"{trial.beta:g}",
        "lfxai.run": trial.run,
        "lfxai.dim_latent": trial.dim_latent,
    }
    run = tracker.tags()
    profile = run.get("lfxai.profile")
    alias = f"{profile}-beta{trial.beta:g}".replace(".", "_") if profile else None
    aliases = (alias,) if alias and run.get("lfxai.experiment") != SWEEP else ()
    uri = tracker.register_encoder(
        model,
        example,
        name if config.register_model else None,
        test_loss,
        about,
        details,
        tags,
        aliases=aliases,
    )
    tracker.set_tags({ENCODER_URI_TAG: uri})
    return uri


def _log_figure(tracker: Tracker, figure: Figure, path: str) -> None:
    """Logs and closes a figure: a paper run draws dozens, and pyplot keeps them all open."""
    tracker.log_figure(figure, path)
    close(figure)


def _title(dataset: DatasetPlugin, trial: VaeTrial) -> str:
    return f"{dataset.title} {trial.loss} (beta={trial.beta:g}, d={trial.dim_latent})"


@register("disvae", DisvaeConfig)
def disvae(dataset: DatasetPlugin, config: DisvaeConfig, tracker: Tracker) -> dict[str, float]:
    """Saliency overlap between latent units for every loss x beta x run, one nested run each.

    Returns:
        Per loss and beta, the mean and std over runs of each metric
        (``<metric>_mean/<loss>/beta<beta>``, ``<metric>_std/...``).
    """
    seed_everything(config.seed)
    splits = load_vae_splits(dataset, config, tracker)
    rows, saliency = [], {}
    for loss in config.loss_list:
        for beta in config.beta_list:
            for run in range(config.n_runs):
                trial = VaeTrial(loss, float(beta), config.dim_latent, run)
                with tracker.nested(trial.name) as child:
                    result = _run_trial(dataset, config, child, trial, splits)
                    rows.append({"loss": loss, "beta": beta, "run": run, **result.metrics})
                    rows[-1]["run_id"] = child.run_id
                    if run == 0:
                        saliency[(loss, beta)] = result.saliency

    table = pd.DataFrame(rows)
    tracker.log_table(table, "disvae.csv")
    title = f"{dataset.title} Burgess VAE (d={config.dim_latent})"
    metrics = list(SALIENCY_METRICS)
    _log_figure(tracker, metric_box_plots(table, metrics, title), "metric_box_plots")
    examples = splits.explain.x[:N_EXAMPLES]
    for loss in config.loss_list:
        maps, labels = [], []
        for beta in config.beta_list:
            units = saliency[(loss, beta)]
            maps += [units[:, j : j + 1] for j in range(units.shape[1])]
            labels += [f"beta {beta:g} unit {j}" for j in range(units.shape[1])]
        figure = dataset.example_figure(examples, maps, labels, f"{title}, {loss}, run 0")
        _log_figure(tracker, figure, f"saliency_units/{loss}")
    summary = _summary(table, metrics + ["test_loss", "test_reconstruction"])
    tracker.log_metrics(summary)
    log_claims(tracker, "disvae", table, title)
    return summary


def _summary(table: pd.DataFrame, metrics: list[str]) -> dict[str, float]:
    """Mean and std over runs of each metric, per loss and beta."""
    out = {}
    for (loss, beta), group in table.groupby(["loss", "beta"], sort=False):
        for metric in metrics:
            values = group[metric].to_numpy(dtype=float)
            key = f"{loss}/beta{beta:g}"
            out[f"{metric}_mean/{key}"] = float(np.mean(values))
            out[f"{metric}_std/{key}"] = float(np.std(values))
    return out
