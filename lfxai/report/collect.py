"""Which runs the report shows, and what each missing experiment would cost.

For every (dataset, experiment) of the suite, the report's run is the newest FINISHED
top-level run of the profile with the profile's settings (apart from the seed and the
:data:`NEUTRAL` settings, which change no result); when there is none, the newest FINISHED run
of the profile at the profile's scale (every ``n_*`` setting, e.g. epochs, examples, runs, the
profile's) with other settings (e.g. fewer methods), whose differences the report states. The
other FINISHED runs with its settings apart from the seed are aggregated with it. Runs given
by id replace that choice for their experiments (several of one experiment are aggregated).
Runs of the profile at a smaller scale (e.g. fewer epochs) or unfinished are not results: they
are the measurements of what a missing experiment costs.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

import lfxai.experiments  # noqa: F401  (fills the registry)
from lfxai.config import (
    PROFILES,
    ConfigError,
    build_config,
    load_profile,
    parse_setting,
    to_flat_dict,
)
from lfxai.experiments.registry import entries, get_experiment
from lfxai.plugins import get_dataset
from lfxai.tracking import RunRecord, StoreReader, experiment_name

# Settings that change no result: where data lives, the device, what is registered or logged,
# batch sizes of explanation passes. The seed is compared apart (it varies over runs).
NEUTRAL = (
    "data_dir",
    "device",
    "register_model",
    "log_retrained_models",
    "register_retrained",
    "attribution_batch_size",
    "n_plots",
)
SCALE_PREFIX = "n_"  # epochs, examples, runs...: a run with other ones is shortened
SEED = "seed"
FINISHED = "FINISHED"


@dataclass
class Entry:
    """One (dataset, experiment) of the suite and the runs the report uses for it.

    Attributes:
        runs: the report's run first, then the other runs of the same settings (newest
            first); empty when the experiment is missing.
        measured: runs of the profile at another scale or unfinished (costs only).
        profile_settings: the profile's resolved settings as strings (``to_flat_dict``).
        differs: the report's run's settings that are not the profile's (seed aside).
    """

    dataset: str
    experiment: str
    profile: str
    runs: list[RunRecord] = field(default_factory=list)
    measured: list[RunRecord] = field(default_factory=list)
    profile_settings: dict[str, str] = field(default_factory=dict)
    differs: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The entry's MLflow experiment, ``<dataset>-<experiment>``."""
        return experiment_name(self.dataset, self.experiment)

    @property
    def run(self) -> RunRecord | None:
        """The newest run reported on (None: missing)."""
        return self.runs[0] if self.runs else None

    def command(self) -> str:
        """The command that produces the missing run."""
        words = ["mlflow", "run", ".", "-e", self.dataset, "-P", f"name={self.experiment}"]
        words += ["-P", f"profile={self.profile}", "--env-manager", "local"]
        return shlex.join([*words, "--experiment-name", self.name])


DATASET_ORDER = ("mnist", "ecg5000", "cifar10", "dsprites")  # the paper's order


def ordered_entries() -> list[tuple[str, str]]:
    """Every (dataset, experiment) in the paper's order.

    Data sets as in the paper, each one's experiments as its plugin lists them.
    """
    rank = {d: i for i, d in enumerate(DATASET_ORDER)}
    return sorted(
        entries(),
        key=lambda e: (rank.get(e[0], len(rank)), e[0], get_dataset(e[0]).experiments.index(e[1])),
    )


def check_profile(profile: str) -> None:
    """Raises :class:`ConfigError` naming an unknown profile and the valid ones."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; valid choices: {list(PROFILES)}")


def profile_settings(dataset: str, experiment: str, profile: str) -> dict[str, str]:
    """The resolved settings of a profile, as the runs log them (``config.<key>``)."""
    schema = get_experiment(dataset, experiment).schema
    return to_flat_dict(build_config(schema, load_profile(dataset, experiment, profile)))


def differences(run: RunRecord, settings: dict[str, str], schema: type) -> dict[str, str]:
    """``{setting: the run's value}`` where the run's logged settings differ from ``settings``.

    Only settings both sides have are compared (typed, so ``50`` equals ``50.0``): a setting
    added to or removed from the code since the run was made is not a difference.
    """
    out = {}
    for key, theirs in settings.items():
        logged = run.params.get(f"config.{key}")
        if logged is None:
            continue
        try:
            same = parse_setting(schema, key, logged) == parse_setting(schema, key, theirs)
        except ConfigError:  # a setting the code no longer has, or an unparsable value
            same = logged == theirs
        if not same:
            out[key] = logged
    return out


def _top_level(runs: list[RunRecord]) -> list[RunRecord]:
    return [r for r in runs if r.parent is None and "lfxai.moved_to" not in r.tags]


def _identity(run: RunRecord) -> tuple[str, str]:
    return run.tags.get("lfxai.dataset", ""), run.tags.get("lfxai.experiment", "")


def check_given(reader: StoreReader, run_ids: list[str], profile: str) -> list[RunRecord]:
    """The runs given by id, each checked.

    Each must be an lfxai experiment's top-level FINISHED run of ``profile``.

    Raises:
        ConfigError: one line naming the bad run id and what it is instead.
    """
    valid = {experiment_name(d, e) for d, e in entries()}
    runs = []
    for run_id in run_ids:
        try:
            run = reader.run(run_id)
        except LookupError as error:
            raise ConfigError(f"run id {run_id!r}: {error}") from None
        if _identity(run) not in set(entries()) or run.parent is not None:
            what = f"nested run of {run.parent}" if run.parent else f"run of '{run.experiment}'"
            raise ConfigError(
                f"run id {run_id} is a {what}, not a top-level run of an lfxai experiment; "
                f"valid: runs of {sorted(valid)}"
            )
        if run.tags.get("lfxai.profile") != profile:
            raise ConfigError(
                f"run id {run_id} is a {run.tags.get('lfxai.profile')!r}-profile run; this "
                f"report is of the {profile!r} profile (pass profile="
                f"{run.tags.get('lfxai.profile')})"
            )
        if run.status != FINISHED:
            raise ConfigError(f"run id {run_id} is {run.status}, not FINISHED")
        runs.append(run)
    return runs


def select(reader: StoreReader, profile: str, run_ids: list[str] | None = None) -> list[Entry]:
    """Every (dataset, experiment) of the suite with the runs the report uses.

    See the module docstring; ``run_ids`` replace the automatic choice for their experiments.
    """
    check_profile(profile)
    given = check_given(reader, run_ids or [], profile)
    names = set(reader.experiment_names())
    out = []
    for dataset, experiment in ordered_entries():
        entry = Entry(dataset, experiment, profile)
        schema = get_experiment(dataset, experiment).schema
        entry.profile_settings = profile_settings(dataset, experiment, profile)
        candidates = []
        if entry.name in names:
            found = reader.runs(entry.name, f"tags.`lfxai.profile` = '{profile}'")
            candidates = [r for r in _top_level(found) if _identity(r) == (dataset, experiment)]
        chosen = [r for r in given if _identity(r) == (dataset, experiment)]
        diff = {
            r.run_id: material(differences(r, entry.profile_settings, schema), seed=True)
            for r in candidates
        }
        at_scale = [  # finished, and neither shortened nor enlarged
            r
            for r in candidates
            if r.status == FINISHED and not any(k.startswith(SCALE_PREFIX) for k in diff[r.run_id])
        ]
        exact = [r for r in at_scale if not diff[r.run_id]]
        if chosen:  # the runs given by id, and only those
            entry.runs = chosen
        elif at_scale:  # the newest (of the profile's settings if any), and its settings' others
            first = (exact or at_scale)[0]
            settings = _unprefixed(first.params)
            entry.runs = [first] + [
                r
                for r in at_scale
                if r is not first and not material(differences(r, settings, schema), seed=True)
            ]
        if entry.runs:
            primary = entry.runs[0]
            entry.differs = diff.get(primary.run_id) or material(
                differences(primary, entry.profile_settings, schema), seed=True
            )
        used = {r.run_id for r in entry.runs}
        entry.measured = [
            r for r in candidates if r.run_id not in used and wall_seconds(r) is not None
        ]
        out.append(entry)
    return out


def _unprefixed(params: dict[str, str]) -> dict[str, str]:
    """The ``config.*`` params without their prefix."""
    return {k.removeprefix("config."): v for k, v in params.items() if k.startswith("config.")}


def material(diff: dict[str, str], seed: bool = False) -> dict[str, str]:
    """The differences that change results (``seed`` too unless ``seed``: aggregated)."""
    skip = set(NEUTRAL) | ({SEED} if seed else set())
    return {k: v for k, v in diff.items() if k not in skip}


def wall_seconds(run: RunRecord) -> float | None:
    """The run's wall time in seconds (None while it runs).

    Its ``time/total_seconds``, else end - start.
    """
    if "time/total_seconds" in run.metrics:
        return run.metrics["time/total_seconds"]
    if run.end_time:
        return (run.end_time - run.start_time) / 1000
    return None
