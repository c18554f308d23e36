"""What a missing experiment costs, from runs that measured it: never a guess.

A measurement is a run of the experiment in the report's profile that is not a result (other
settings, e.g. fewer epochs, or unfinished). Its wall time (``time/total_seconds``, else end
minus start) and device (``device_used``) are shown as measured. When it differs from the
profile only in ``n_epochs`` and ``n_runs``, the profile's cost is extrapolated from what it
logged: every model that trained all its epochs (``fit/epochs``) would train the profile's
epochs at its measured ``time/fit_seconds_per_epoch`` (a model that stopped early would stop
at the same epoch: an upper bound, since early stopping may end sooner), and nested runs
(one per model) scale with ``n_runs``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lfxai.experiments.registry import get_experiment
from lfxai.report.collect import Entry, differences, material, wall_seconds
from lfxai.tracking import RunRecord, StoreReader

SCALABLE = {"n_epochs", "n_runs"}


@dataclass(frozen=True)
class Measurement:
    """One run that measured (part of) a missing experiment's cost.

    Attributes:
        run: the run.
        device: ``device_used`` (``cpu``, ``cuda``, ...).
        wall: its wall time in seconds.
        differs: its settings that differ from the profile.
        estimate: seconds at the profile's settings, when they can be extrapolated.
        note: how (or why not).
    """

    run: RunRecord
    device: str
    wall: float
    differs: dict[str, str]
    estimate: float | None
    note: str


def _int(value: str | None, default: int) -> int:
    try:
        return int(float(value)) if value is not None else default
    except ValueError:
        return default


def _extra_epochs(run: RunRecord, planned: int, setting: int) -> float:
    """Seconds the run's own model would add to train ``planned`` instead of ``setting``."""
    per_epoch = run.metrics.get("time/fit_seconds_per_epoch")
    trained = run.metrics.get("fit/epochs")
    if per_epoch is None or trained is None or int(trained) < setting:
        return 0.0  # nothing trained here, or it stopped early: it would stop there again
    return (planned - setting) * per_epoch


def measure(reader: StoreReader, entry: Entry) -> list[Measurement]:
    """The measurements of ``entry``'s cost, newest first."""
    schema = get_experiment(entry.dataset, entry.experiment).schema
    out = []
    for run in entry.measured:
        wall = wall_seconds(run)
        if wall is None:
            continue
        device = run.params.get("device_used", "?")
        differs = material(differences(run, entry.profile_settings, schema))
        if run.status != "FINISHED":
            out.append(Measurement(run, device, wall, differs, None, f"{run.status}: partial"))
            continue
        if not set(differs) <= SCALABLE:
            other = sorted(set(differs) - SCALABLE)
            note = f"not extrapolated: differs in {', '.join(other)}"
            out.append(Measurement(run, device, wall, differs, None, note))
            continue
        planned = _int(entry.profile_settings.get("n_epochs"), 0)
        setting = _int(run.params.get("config.n_epochs"), planned)
        runs_factor = _int(entry.profile_settings.get("n_runs"), 1) / max(
            _int(run.params.get("config.n_runs"), 1), 1
        )
        children = [c for c in reader.children(run.run_id) if wall_seconds(c) is not None]
        children_wall = sum(wall_seconds(c) or 0.0 for c in children)
        children_extra = sum(_extra_epochs(c, planned, setting) for c in children)
        parent = wall - children_wall + _extra_epochs(run, planned, setting)
        estimate = parent + (children_wall + children_extra) * runs_factor
        note = "extrapolated from its time per epoch" if differs else "measured"
        if children:
            note += f" and its {len(children)} nested runs"
        out.append(Measurement(run, device, wall, differs, estimate, note))
    return out


def duration(seconds: float | None) -> str:
    """``1 h 02 min``, ``3 min 20 s``, ``12 s``; ``-`` for None."""
    if seconds is None:
        return "-"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
