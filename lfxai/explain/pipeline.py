"""One ``explain`` run: load the encoder, check it against the data, explain it, log it all.

Every check comes before any explanation, each failing with one line that names the bad
value: the URI (no such model, alias, version or run; a pickled or code-carrying model), an
example method that needs a training loss the model does not carry, inputs of another shape
than the model takes, codes that are not ``(N, d)``. The work is the consistency
experiments' own (:func:`~lfxai.experiments.consistency_features.feature_shifts`,
:func:`~lfxai.experiments.consistency_examples.example_scores`), on the registered encoder
instead of a freshly trained one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lfxai.config import ConfigError
from lfxai.data.splits import Split
from lfxai.devices import get_device, seed_everything
from lfxai.experiments.common import load_splits
from lfxai.experiments.consistency_examples import (
    balanced_subset,
    example_scores,
    log_similarity_rates,
    similarity_table,
)
from lfxai.experiments.consistency_features import (
    N_EXAMPLES,
    feature_shifts,
    log_feature_shifts,
)
from lfxai.experiments.verdicts import log_claim_report
from lfxai.explain.settings import (
    EXAMPLE_CHOICES,
    EXPLAIN,
    LOSS_METHODS,
    RANDOM,
    ExplainConfig,
)
from lfxai.explanations.examples import EXAMPLE_METHODS, ExampleBasedExplainer
from lfxai.explanations.examples.random import RandomExamples
from lfxai.metrics.claims import CLAIMS, claims_title
from lfxai.plotting.examples import top_bottom_examples
from lfxai.plugins import DatasetPlugin
from lfxai.tracking import (
    LFXAI_MODEL,
    PT2_MODEL,
    EncoderRefused,
    ExplainedModel,
    Tracker,
    load_explained_model,
    record_explained_model,
)

N_SHOWN = 6  # test examples shown beside their most and least important training examples
# Why a registered model has no training loss, by kind (lfxai.tracking.LFXAI_MODEL / PT2_MODEL).
NO_LOSS = {
    LFXAI_MODEL: "is an lfxai encoder, registered without the decoder its reconstruction "
    "loss needs",
    PT2_MODEL: "is a pt2 graph of an encoder's forward pass, which carries no loss",
}


def load_model(
    uri: str, device: torch.device, tracker: Tracker
) -> tuple[nn.Module, ExplainedModel]:
    """The encoder at ``uri`` on ``device``, recorded on the run as the model it consumes.

    Nothing from the store runs as code; the record: :func:`lfxai.tracking.record_explained_model`.

    Raises:
        ConfigError: the URI does not resolve, or the model is refused (one line: why).
    """
    try:
        module, model = load_explained_model(uri, str(device))
    except EncoderRefused as error:
        raise ConfigError(str(error)) from None
    record_explained_model(tracker, model)
    return module, model


def refuse_loss_methods(methods: tuple[str, ...], model: ExplainedModel) -> None:
    """Raises :class:`ConfigError` if ``methods`` asks for a training loss ``model`` lacks.

    InfluenceFunctions and TracIn differentiate the loss the model was trained with (TracIn
    also sums over its training checkpoints); a registered encoder carries neither.
    """
    needing = [m for m in methods if m in LOSS_METHODS]
    if needing:
        valid = [m for m in EXAMPLE_CHOICES if m not in LOSS_METHODS]
        raise ConfigError(
            f"example_methods {needing} differentiate the model's training loss (TracIn also "
            f"sums over its training checkpoints), but {model.resolved} {NO_LOSS[model.kind]}; "
            f"valid example_methods for it: {valid}"
        )


def _shape(shape: tuple[int, ...]) -> str:
    """``(N, 1, 28, 28)`` without the brackets; ``*`` for a size the signature leaves open."""
    return ", ".join(["N", *("*" if n == -1 else str(n) for n in shape)])


def check_encoder(
    module: nn.Module, inputs: torch.Tensor, model: ExplainedModel, dataset: str
) -> int:
    """Checks that ``module`` takes ``dataset``'s inputs and gives one code per input.

    The shape its signature declares is compared first; then ``inputs`` (a couple of the
    data set's examples, on the module's device) go through it.

    Returns:
        The size ``d`` of the codes.

    Raises:
        ConfigError: another input shape, an error on the examples, or output that is not
            a finite float tensor ``(N, d)`` (each named with the shapes).
    """
    shape, declared = tuple(inputs.shape[1:]), model.input_shape
    fits = declared is None or (
        len(declared) == len(shape)
        and all(d in (-1, n) for d, n in zip(declared, shape, strict=True))
    )
    if not fits:
        raise ConfigError(
            f"{model.resolved} takes inputs ({_shape(declared)}) by its signature, but dataset "
            f"{dataset!r} gives ({_shape(shape)}); explain it on a data set of its input shape"
        )
    try:
        with torch.no_grad():
            codes = module(inputs)
    except Exception as error:  # whatever the module raises on inputs it cannot take
        first = next((ln.strip() for ln in str(error).splitlines() if ln.strip()), "")
        raise ConfigError(
            f"{model.resolved} does not take the inputs of dataset {dataset!r} ({_shape(shape)}): "
            f"{type(error).__name__}{': ' + first if first else ''}"
        ) from None
    found = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
    if not isinstance(codes, torch.Tensor) or codes.dim() != 2 or len(codes) != len(inputs):
        raise ConfigError(
            f"{model.resolved} gives {found} for {len(inputs)} inputs of dataset {dataset!r}: "
            "label-free explanations need one code per input, (N, d); register an encoder "
            "that returns them (e.g. flatten its output)"
        )
    if not codes.is_floating_point() or not torch.isfinite(codes).all():
        raise ConfigError(
            f"{model.resolved} gives codes of dtype {codes.dtype} that are not all finite "
            f"floats on dataset {dataset!r}"
        )
    return codes.shape[1]


def class_labels(labels: torch.Tensor) -> torch.Tensor:
    """The labels similarity rates compare.

    The labels themselves, or the first factor of multi-factor labels ``(N, F)`` (dSprites:
    the shape of the sprite).
    """
    return labels if labels.dim() == 1 else labels[:, 0]


def decoded(split: Split) -> Split:
    """``split`` with its inputs as a tensor (dSprites' packed images decoded), class labels."""
    x = split.x if isinstance(split.x, torch.Tensor) else split.x[torch.arange(len(split))]
    return Split(x, class_labels(split.y))


def model_label(model: ExplainedModel) -> str:
    """How titles name the model: ``<name>@<alias> (v<version>)``, ``<name> v<version>``, or URI."""
    if model.name is None:
        return model.uri
    if model.alias is not None:
        return f"{model.name}@{model.alias} (v{model.version})"
    return f"{model.name} v{model.version}"


def example_explainer(
    method: str, module: nn.Module, config: ExplainConfig
) -> ExampleBasedExplainer:
    """The example explainer ``method`` of ``module`` with this entry point's options.

    ``explain`` has two of the explainers' settings, ``simplex_steps`` and the seed; every
    other option keeps its constructor default.
    """
    # No loss method: refuse_loss_methods turned them away before any explainer is built.
    options: dict[str, dict[str, Any]] = {
        "SimplEx": {"simplex_steps": config.simplex_steps},
        RANDOM: {"seed": config.seed},
    }
    cls = RandomExamples if method == RANDOM else EXAMPLE_METHODS[method]
    return cls(module, progress=False, **options.get(method, {}))


def _log_top_bottom(
    tracker: Tracker,
    scores: dict[str, torch.Tensor],
    train: Split,
    test: Split,
    title: str,
) -> None:
    """Logs ``top_bottom_examples.png``: test examples beside their extreme training examples.

    The first :data:`N_SHOWN` test examples, each beside the most and least important training
    example of each method.
    """
    shown = min(N_SHOWN, len(test))
    columns = []
    for method, importance in scores.items():
        for heading, index in (
            ("top", importance[:shown].argmax(1)),
            ("bottom", importance[:shown].argmin(1)),
        ):
            columns.append((f"{method} {heading}", train.x[index].numpy(), train.y[index].numpy()))
    figure = top_bottom_examples(
        test.x[:shown].numpy(), test.y[:shown].numpy(), columns, f"{title}: training examples"
    )
    tracker.log_figure(figure, "top_bottom_examples")


def explain(
    plugin: DatasetPlugin, config: ExplainConfig, profile: str, tracker: Tracker
) -> dict[str, float]:
    """Label-free feature and example importance of the registered encoder ``model_uri``.

    Logs, besides the run's inputs (the data, the model): ``codes/test.npy``,
    ``attributions/<method>.npy``, ``example_importance/<method>.npy``,
    ``subsets/{train,test}_idx.npy``, the curves ``representation_shift/<method>`` and
    ``similarity_rate/<method>/{top,bottom}``, their tables and plots, the saliency and
    top/bottom example figures, and the claims report of both consistency checks.

    Returns:
        ``representation_shift_mean/<method>``, ``similarity_rate_top_min_pct/<method>``
        and ``dim_latent`` (the size of the codes).
    """
    generator = seed_everything(config.seed)
    device = get_device(config.device)
    module, model = load_model(config.model_uri, device, tracker)
    refuse_loss_methods(config.example_methods, model)
    splits = load_splits(plugin, config, tracker)  # type: ignore[arg-type]  (same fields)
    explained = decoded(splits.explain)
    dim_latent = check_encoder(module, explained.x[:2].to(device), model, plugin.name)
    tracker.log_params({"dim_latent": dim_latent})
    module.eval()
    title = f"{model_label(model)} on {plugin.title}"

    features = feature_shifts(
        module,
        explained,
        plugin.baseline(splits.train),
        config.feature_methods,
        config.perturbation_percentages,
        config.batch_size,
        config.seed,
        device,
        tracker,
    )
    log_feature_shifts(tracker, plugin, features, explained.x[:N_EXAMPLES], title)

    train_idx = balanced_subset(class_labels(splits.train.y), config.n_train_explained, generator)
    test_idx = torch.randperm(len(explained), generator=generator)[: config.n_test_explained]
    tracker.log_array(train_idx, "subsets/train_idx.npy")
    tracker.log_array(test_idx, "subsets/test_idx.npy")  # positions in the explained examples
    train = decoded(splits.train.subset(train_idx))
    test = explained.subset(test_idx)
    scores = example_scores(
        lambda method: example_explainer(method, module, config),
        config.example_methods,
        train,
        test,
        config.batch_size,
        device,
        tracker,
    )
    table, evidence = similarity_table(scores, test.y, train.y, config.similarity_percentages)
    final = log_similarity_rates(tracker, table, title)
    _log_top_bottom(tracker, scores, train, test, title)

    # The paper's claims by the consistency experiments' rules: each feature method against
    # Random, each example method's top against its bottom rate (Random's is no claim).
    claims = CLAIMS["consistency_features"](features.table, features.evidence)
    methods = table[table.method != RANDOM]
    ours = {k: v for k, v in evidence.items() if not k.startswith(f"{RANDOM}@")}
    claims += CLAIMS["consistency_examples"](methods, ours)
    shifts = features.table.groupby("method", sort=False)["representation_shift"].mean()
    means = {f"representation_shift_mean/{m}": float(v) for m, v in shifts.items()}
    tracker.log_metrics(means)  # the similarity rates' summary is logged already
    heading = claims_title(title, profile, "registered encoder, not trained here")
    evidence_files = {f"features/{k}": v for k, v in features.evidence.items()}
    evidence_files |= {f"examples/{k}": v for k, v in evidence.items()}
    log_claim_report(tracker, EXPLAIN, claims, heading, evidence_files)
    return {**final, **means, "dim_latent": float(dim_latent)}
