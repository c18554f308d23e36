"""Experiment settings: versioned values in ``configs/<dataset>.yaml``, typed by dataclasses.

Each experiment declares a frozen dataclass (its schema). A dataset's YAML file holds a
``defaults`` section (the settings its experiments share, written once) and one section per
experiment, each with a ``paper`` profile (the paper's settings) and smaller profiles that
override some values. A profile's values are composed in this order, later winning:
``defaults.paper``, ``<experiment>.paper``, ``defaults.<profile>``, ``<experiment>.<profile>``
(so a profile's shared value, e.g. a smaller batch, beats an experiment's paper value).
Command-line overrides are parsed with the schema's types; an unknown key or a badly typed
value is an error naming the valid choices.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from lfxai.training import TrainingSettings

PROFILES = ("paper", "quick", "smoke")
DEFAULTS = "defaults"  # the section of a dataset's YAML file that every experiment inherits
KEEP = "profile"  # an override with this value keeps the profile's setting (MLproject default)


class ConfigError(ValueError):
    """A setting is unknown, missing or has a bad value."""


@dataclasses.dataclass(frozen=True)
class BaseConfig:
    """Settings every experiment has."""

    seed: int
    device: str
    data_dir: str
    batch_size: int
    n_epochs: int
    dim_latent: int
    optimizer: str
    lr: float
    weight_decay: float
    lr_schedule: str

    def validate(self) -> None:
        """Raises :class:`ConfigError` on values no experiment accepts."""
        from lfxai.training import OPTIMIZERS, SCHEDULES  # settings name the loop's choices

        for name in ("batch_size", "n_epochs", "dim_latent"):
            value = getattr(self, name)
            if value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value}")
        check_device(self.device)
        check_choices("optimizer", [self.optimizer], OPTIMIZERS)
        check_choices("lr_schedule", [self.lr_schedule], SCHEDULES)
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        self.training()  # the block's own checks (patience, checkpoint_every)

    def training(self, **changes: Any) -> TrainingSettings:
        """This experiment's training block, for :func:`lfxai.training.fit`.

        Every member of :class:`~lfxai.training.TrainingSettings` that this schema declares
        is taken from it (``patience`` and ``checkpoint_every`` are declared only by the
        experiments that stop early or save checkpoints); the others keep the block's
        defaults; ``changes`` replace members (a trial's seed, no checkpoints).

        Raises:
            ConfigError: the block refuses a value (the message names it).
        """
        from lfxai.training import TrainingSettings

        names = [field.name for field in dataclasses.fields(TrainingSettings)]
        values = {name: getattr(self, name) for name in names if hasattr(self, name)}
        try:
            return TrainingSettings(**{**values, **changes})
        except ValueError as error:
            raise ConfigError(str(error)) from None


def config_dir() -> Path:
    """``configs/`` of the project checkout the experiments run from.

    ``LFXAI_CONFIG_DIR`` wins; else the checkout this package sits in; else the working
    directory (a non-editable install run from a checkout).
    """
    candidates = [Path(__file__).resolve().parents[1] / "configs", Path.cwd() / "configs"]
    if "LFXAI_CONFIG_DIR" in os.environ:
        candidates = [Path(os.environ["LFXAI_CONFIG_DIR"])]
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise ConfigError(
        f"no configs/ folder at {[str(c) for c in candidates]}: run experiments from the "
        "project checkout (`mlflow run .`) or set LFXAI_CONFIG_DIR"
    )


def load_profile(dataset: str, experiment: str, profile: str) -> dict[str, Any]:
    """The raw values of one experiment and profile, composed as the module docstring says."""
    path = config_dir() / f"{dataset}.yaml"
    if not path.is_file():
        raise ConfigError(f"no configuration file for dataset {dataset!r} at {path}")
    document = yaml.safe_load(path.read_text()) or {}
    sections = sorted(k for k in document if k != DEFAULTS)
    if experiment == DEFAULTS or experiment not in document:
        raise ConfigError(
            f"no configuration for experiment {experiment!r} in {path.name}; "
            f"valid choices: {sections}"
        )
    shared, profiles = document.get(DEFAULTS) or {}, document[experiment] or {}
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid choices: {list(PROFILES)}")
    for name, section in ((DEFAULTS, shared), (experiment, profiles)):
        unknown = sorted(set(section) - set(PROFILES))
        if unknown:
            raise ConfigError(
                f"{path.name}: section {name!r} has unknown profiles {unknown}; "
                f"valid: {list(PROFILES)}"
            )
    values: dict[str, Any] = {}
    for section, name in ((shared, "paper"), (profiles, "paper"), (shared, profile)):
        values.update(section.get(name) or {})
    values.update(profiles.get(profile) or {})
    return values


def _parse(value: str, annotation: Any, key: str) -> Any:
    """Parses a command-line string into the annotated type."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value.lower() in ("none", "null"):
            return None
        return _parse(value, next(a for a in args if a is not type(None)), key)
    if origin in (list, tuple):
        items = [item.strip() for item in value.split(",") if item.strip()]
        return [_parse(item, args[0], key) for item in items]
    try:
        if annotation is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return value.lower() in ("true", "1", "yes")
        return annotation(value)
    except ValueError:
        name = getattr(annotation, "__name__", str(annotation))
        raise ConfigError(f"{key}={value!r} is not a valid {name}") from None


def parse_setting(schema: type[BaseConfig], key: str, value: str) -> Any:
    """A setting of ``schema`` as logged (a string) parsed into its type.

    E.g. to compare the settings of two runs: ``50`` equals ``50.0``.

    Raises:
        ConfigError: ``key`` is not a setting of ``schema``, or ``value`` does not parse.
    """
    hints = typing.get_type_hints(schema)
    if key not in hints:
        raise ConfigError(f"unknown setting {key!r} of {schema.__name__}")
    return _parse(value, hints[key], key)


def build_config(
    schema: type[BaseConfig],
    values: dict[str, Any],
    overrides: dict[str, str] | None = None,
) -> BaseConfig:
    """Instantiates ``schema`` from profile values and string overrides, then validates it.

    Args:
        schema: the experiment's frozen dataclass.
        values: values from the YAML profile (already typed by YAML).
        overrides: ``{key: string}`` from the command line; :data:`KEEP` keeps the
            profile's value (an empty string is a value: an empty list, or an error).

    Returns:
        The validated, resolved configuration.
    """
    hints = typing.get_type_hints(schema)
    valid = sorted(hints)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ConfigError(f"unknown settings {unknown} in the config file; valid: {valid}")
    merged = dict(values)
    for key, raw in (overrides or {}).items():
        if key not in hints:
            raise ConfigError(f"unknown parameter {key!r}; valid choices: {valid}")
        if raw != KEEP:
            merged[key] = _parse(raw, hints[key], key)
    missing = sorted(set(hints) - set(merged))
    if missing:
        raise ConfigError(f"missing settings {missing} for {schema.__name__}")
    for key, value in merged.items():
        if isinstance(value, list):
            merged[key] = tuple(value)  # frozen and hashable
    config = schema(**merged)
    config.validate()
    return config


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A command's settings, resolved once, and how they differ from its profile's.

    Attributes:
        config: the validated settings.
        given: the overrides as passed (those equal to :data:`KEEP` left out).
        changed: ``{setting: (this run's value, the profile's value)}`` for the given
            settings whose value differs from the profile's, in the schema's order.
    """

    config: BaseConfig
    given: dict[str, str]
    changed: dict[str, tuple[Any, Any]]


def resolve(
    schema: type[BaseConfig], values: dict[str, Any], overrides: dict[str, str]
) -> Resolved:
    """:func:`build_config` once, with what the overrides changed (see :class:`Resolved`)."""
    config = build_config(schema, values, overrides)
    given = {k: v for k, v in overrides.items() if v != KEEP}
    changed = {}
    for key, ours in dataclasses.asdict(config).items():
        theirs = values.get(key)
        theirs = tuple(theirs) if isinstance(theirs, list) else theirs
        if key in given and ours != theirs:
            changed[key] = (ours, theirs)
    return Resolved(config, given, changed)


def setting_differences(config: BaseConfig, logged: dict[str, str]) -> list[str]:
    """How ``config`` differs from settings logged as strings (:func:`to_flat_dict`).

    Values are compared once parsed with the schema's types, so ``50`` (from YAML) equals
    ``50.0`` (from the command line).

    Returns:
        One line per setting that differs, or is only on one side (empty: the same settings).
    """
    hints = typing.get_type_hints(type(config))
    ours, flat = dataclasses.asdict(config), to_flat_dict(config)
    lines = []
    for key in sorted(set(hints) | set(logged)):
        theirs = logged.get(key)
        if key in hints and theirs is None and ours[key] is None:
            continue  # a None setting is not logged (to_flat_dict): absent means None
        if key in hints and theirs is not None:
            try:
                value = _parse(theirs, hints[key], key)
            except ConfigError:
                value = theirs
            if (tuple(value) if isinstance(value, list) else value) == ours[key]:
                continue
        lines.append(f"{key}: the run has {theirs!r}, this command {flat.get(key)!r}")
    return lines


def to_flat_dict(config: BaseConfig) -> dict[str, str]:
    """The configuration as ``{key: string}`` for MLflow params.

    ``None`` settings (e.g. ``n_train: null``, all examples) are left out: MLflow params are
    strings and ``'None'`` would read as a value; ``config.yaml`` keeps them as ``null``.
    """
    out = {}
    for key, value in dataclasses.asdict(config).items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        out[key] = str(value)
    return out


def check_device(device: str) -> None:
    """Raises :class:`ConfigError` unless ``device`` is ``auto``, ``cpu`` or a usable CUDA device.

    A CUDA device (``cuda``, ``cuda:i``) must be one torch can use here, so that a missing GPU fails
    in validation.
    """
    if device in ("auto", "cpu"):
        return
    if re.fullmatch(r"cuda(:\d+)?", device) is None:
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    from lfxai.devices import get_device  # the loop's own check, with its reasons

    try:
        get_device(device)
    except ValueError as error:
        raise ConfigError(f"{error}; use device=auto or device=cpu") from None


def _check_distinct(key: str, values: list[Any]) -> None:
    duplicates = sorted({v for v in values if values.count(v) > 1}, key=values.index)
    if duplicates:
        raise ConfigError(f"{key} lists {duplicates} more than once: {values}")


def check_choices(key: str, values: typing.Iterable[str], choices: typing.Iterable[str]) -> None:
    """Raises :class:`ConfigError` if ``values`` is empty, lists an unknown entry or one twice.

    Valid entries are those of ``choices``.
    """
    values, choices = list(values), sorted(choices)
    if not values:
        raise ConfigError(f"{key} must not be empty; valid choices: {choices}")
    for value in values:
        if value not in choices:
            raise ConfigError(f"unknown {key} entry {value!r}; valid choices: {choices}")
    _check_distinct(key, values)


def check_percentages(key: str, values: typing.Iterable[float]) -> None:
    """Raises :class:`ConfigError` unless the list holds distinct whole percents in (0, 100].

    An empty list is refused too.

    Whole percents, because each curve uses the percentage as its MLflow metric ``step``, an
    integer: 0.4 would become step 0 (the unperturbed point) and 10.4 collide with 10.
    """
    values = list(values)
    if not values:
        raise ConfigError(f"{key} must not be empty; valid values lie in (0, 100]")
    for value in values:
        if not 0 < value <= 100:
            raise ConfigError(f"{key} entry {value} is outside (0, 100]")
        if value != int(value):
            raise ConfigError(
                f"{key} entry {value} is not a whole percent: curves use the percentage as "
                "their MLflow step, an integer (a fraction would be rounded into another point)"
            )
    _check_distinct(key, values)


def check_positive(config: BaseConfig, *keys: str) -> None:
    """Raises :class:`ConfigError` unless each named setting is positive (None is allowed)."""
    for key in keys:
        value = getattr(config, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{key} must be positive, got {value}")
