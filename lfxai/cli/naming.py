"""What the UI shows of a command's run: its name and its description (Markdown).

A run's name says what tells it apart from the other runs of its experiment, first, since the
UI cuts long names short (runs table, chart legends, Compare headers, the registry's source
run): ``#4 smoke seed=3 · consistency_features``. Its description gives the command line, how
to run it again and the settings that differ from the profile.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NAME_EXCLUDES = ("data_dir",)  # where the data lives changes no result: not in run names
MAX_NAME_VALUE = 24  # longer values are cut in run names (the description has them whole)


@dataclass(frozen=True)
class Request:
    """What one command line asked for.

    Attributes:
        entry_point: the MLproject entry point (``mnist``, ``sweep``, ``report``).
        experiment: what runs (``consistency_features``, ``sweep``).
        profile: the settings profile.
        declared: the entry point's declared parameters, in the MLproject's order.
        argv: the command line as given to the entry point module.
    """

    entry_point: str
    experiment: str
    profile: str
    declared: dict[str, str]
    argv: Sequence[str]

    def command_line(self) -> str:
        """The entry point's own command line, quoted."""
        return shlex.join(["python", "-m", f"entrypoints.{self.entry_point}", *self.argv])

    def rerun(self, settings: dict[str, Any], environment: dict[str, str] | None = None) -> str:
        """``mlflow run . -e <entry point> -P k=v ...`` with ``settings`` after the declared.

        ``environment`` (e.g. the store, ``MLFLOW_TRACKING_URI``) prefixes it as ``KEY=value``.
        """
        line = ["mlflow", "run", ".", "-e", self.entry_point]
        for key, value in {**self.declared, **settings}.items():
            line += ["-P", f"{key}={value}"]
        # Only the value is quoted: a quoted 'KEY=value' word is no assignment to the shell.
        prefix = [f"{key}={shlex.quote(value)}" for key, value in (environment or {}).items()]
        return " ".join([*prefix, shlex.join(line)])


def show(value: Any) -> str:
    """A setting's value as a user types it (lists comma-separated)."""
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def run_name(experiment: str, profile: str, settings: dict[str, Any], number: int) -> str:
    """``#<number> <profile> [k=v ...] · <experiment>``, e.g. ``#2 quick n_epochs=3 · roar_test``.

    Args:
        experiment: what ran.
        profile: its settings profile.
        settings: what tells the run apart (``data_dir`` is left out).
        number: the run's number in its experiment.
    """
    parts = [f"#{number}", profile]
    for key, value in settings.items():
        if key in NAME_EXCLUDES:
            continue
        text = show(value)
        if len(text) > MAX_NAME_VALUE:
            text = text[: MAX_NAME_VALUE - 1] + "…"
        parts.append(f"{key}={text}")
    return " ".join([*parts, "·", experiment])


def describe(
    request: Request,
    headline: str,
    given: dict[str, Any],
    changed: dict[str, tuple[Any, Any]] | None,
    rerun_label: str = "Rerun with",
    notes: Sequence[str] = (),
    environment: dict[str, str] | None = None,
) -> str:
    """The run's description: what ran, its command line, how to rerun it, what differs.

    Args:
        request: the command line.
        headline: the first paragraph (what ran).
        given: the settings passed on the command line, as passed (in the rerun command).
        changed: ``{setting: (value, profile's value)}``; None while not resolved (bad input).
        rerun_label: what the rerun command does (e.g. continue a study).
        notes: paragraphs after the settings.
        environment: variables the rerun command sets (never a secret: callers redact).
    """
    lines = [
        headline,
        "",
        f"Command line: `{request.command_line()}`",
        "",
        f"{rerun_label}: `{request.rerun(given, environment)}` "
        "(add `--env-manager local` without conda)",
        "",
    ]
    if changed is None:
        lines.append("The settings were not resolved (bad input: see the tag `lfxai.error`).")
    elif changed:
        lines += [f"Settings that differ from the `{request.profile}` profile:", ""]
        lines += ["| setting | this run | profile |", "|---|---|---|"]
        lines += [f"| {k} | {show(v)} | {show(p)} |" for k, (v, p) in changed.items()]
    else:
        lines.append(f"All settings are the `{request.profile}` profile's.")
    for note in notes:
        lines += ["", note]
    return "\n".join(lines)
