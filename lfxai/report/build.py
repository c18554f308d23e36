"""The report: every experiment's claims, numbers and figures beside the published ones.

Also what is missing and what it costs, and where every number came from.

:func:`build` reads the store and returns a :class:`Report`; :meth:`Report.write` saves
``index.md``, ``index.html`` (self-contained), ``figures/*.png`` and ``report.json`` (the
verdicts and sources, machine-readable).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from matplotlib import pyplot as plt

from lfxai import __version__
from lfxai.metrics.verdicts import (
    LEGEND,
    VERDICTS,
    Claim,
    aggregate,
    claims_title,
    epochs_label,
)
from lfxai.metrics.verdicts import evidence_text as claim_evidence
from lfxai.plotting.style import report_style
from lfxai.plugins import get_dataset
from lfxai.redact import redact
from lfxai.report import reference
from lfxai.report.collect import Entry, select, wall_seconds
from lfxai.report.costs import duration, measure
from lfxai.report.document import Bullets, Document, Figure, Heading, Paragraph, Table
from lfxai.report.results import RunResult, read_result
from lfxai.report.sections import SECTIONS
from lfxai.tracking import StoreReader

PROFILE_NOTES = {
    "quick": "minutes on a 2-core CPU: fewer epochs and examples than the paper",
    "smoke": "seconds: a check that the pipeline runs, with tiny data and one epoch",
}
COMMIT_TAG = "mlflow.source.git.commit"


@dataclass
class Report:
    """A built report: the document and what it is made of."""

    profile: str
    document: Document
    entries: list[Entry]
    results: dict[str, list[RunResult]] = field(default_factory=dict)
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def sources(self) -> list[str]:
        """The run ids of every run the report shows."""
        return [r.run_id for e in self.entries for r in e.runs]

    @property
    def missing(self) -> list[Entry]:
        """The report's entries without a run."""
        return [e for e in self.entries if not e.runs]

    def write(self, folder: Path) -> Path:
        """Writes the report into ``folder``; returns ``index.html``."""
        from lfxai.report.document import to_html, to_markdown

        folder.mkdir(parents=True, exist_ok=True)
        (folder / "figures").mkdir(exist_ok=True)
        for figure in self.document.figures():
            (folder / figure.path).write_bytes(figure.png)
        (folder / "index.md").write_text(to_markdown(self.document))
        (folder / "index.html").write_text(to_html(self.document))
        summary = {
            "profile": self.profile,
            "sources": self.sources,
            "experiments": self.verdicts,
            "missing": {e.name: e.command() for e in self.missing},
        }
        (folder / "report.json").write_text(json.dumps(summary, indent=2, allow_nan=True))
        return folder / "index.html"


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _counts(claims: list[Claim]) -> str:
    """``2 holds, 1 inconclusive``: the verdicts counted, in the order of VERDICTS."""
    counts = [(v, sum(c.verdict == v for c in claims)) for v in VERDICTS]
    return ", ".join(f"{n} {v}" for v, n in counts if n) or "no claim"


def _claims_table(claims: list[Claim]) -> Table:
    rows = []
    for claim in claims:
        margin, test = claim_evidence(claim)
        section = claim.section.split(" (")[0]
        rows.append([f"**{claim.verdict}**", section, claim.statement, margin, test])
    return Table(["verdict", "paper", "claim", "margin at the deciding point", "test"], rows)


def _title(entry: Entry, result: RunResult) -> str:
    plugin = get_dataset(entry.dataset)
    base = result.logged_title.split(" · ")[0] or f"{plugin.title} {entry.experiment}"
    epochs = epochs_label(result.run.params, result.run.metrics)
    return claims_title(base, entry.profile, epochs)


def _server(uri: str) -> str:
    """A tracking server's address as the report links it: without credentials or a query."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}".rstrip("/")


def _provenance(results: list[RunResult], uri: str) -> Table:
    rows = []
    for result in results:
        run = result.run
        link = run.run_id
        if uri.startswith(("http://", "https://")):
            page = f"{_server(uri)}/#/experiments/{run.experiment_id}/runs/{run.run_id}"
            link = f"[{run.run_id}]({page})"
        started = datetime.fromtimestamp(run.start_time / 1000, UTC).strftime("%Y-%m-%d %H:%M")
        rows.append(
            [
                link,
                run.tags.get("mlflow.runName", ""),
                run.tags.get(COMMIT_TAG, "-")[:12],
                run.params.get("device_used", "-"),
                duration(wall_seconds(run)),
                run.tags.get("lfxai.data_digest", "-"),
                f"{started} UTC",
            ]
        )
    header = ["run id", "name", "code commit", "device", "wall time", "data digest", "started"]
    return Table(header, rows)


def _experiment(document: Document, entry: Entry, results: list[RunResult], uri: str) -> dict:
    """Adds one experiment's section; returns its verdicts for ``report.json``."""
    plugin = get_dataset(entry.dataset)
    mark = "" if entry.profile == "paper" else f" ({entry.profile} profile)"
    document.add(Heading(2, f"{plugin.title} · {entry.experiment}{mark}", anchor=entry.name))
    found = reference.finding(entry.dataset, entry.experiment)
    if found:
        cited = " ".join(f"[{s}]" for s in found["sources"])
        document.add(Paragraph(f"**Published:** {found['text']} {cited}".rstrip()))
    if entry.differs:
        changed = ", ".join(f"`{k}={v}`" for k, v in entry.differs.items())
        document.add(
            Paragraph(f"Settings that differ from the {entry.profile} profile: {changed}.")
        )
    primary = results[0]
    if primary.table is None:
        document.add(
            Paragraph(f"Run {primary.run.run_id} logged no result table: nothing to show.")
        )
        return {"runs": [r.run.run_id for r in results], "claims": {}}
    document.add(Heading(3, f"Claims: {_title(entry, primary)}"), _claims_table(primary.claims))
    if not primary.current_rules and primary.logged is not None:
        document.add(
            Paragraph(
                "Verdicts recomputed with the current rules from the run's logged results; the "
                "run's own `claims.json` was written with earlier rules.",
                css="note",
            )
        )
    for result in results:
        for line in result.disagreements():
            document.add(Paragraph(f"**Disagreement** in run {result.run.run_id}: {line}"))
    verdicts = {c.key: c.verdict for c in primary.claims}
    combined: list[Claim] = []
    if len(results) > 1:
        combined = aggregate([r.claims for r in results])
        heading = f"Claims over {len(results)} runs of the same settings (seeds differ)"
        document.add(Heading(3, heading), _claims_table(combined))
    with report_style():
        section = SECTIONS[entry.experiment](entry.dataset, results)
    document.add(*section.blocks)
    for name, figure, caption in section.figures:
        path = f"figures/{entry.name}-{name}.png"
        document.add(Figure(path, _png(figure), f"{caption}{mark}"))
    document.add(Heading(3, "Provenance"), _provenance(results, uri))
    return {
        "runs": [r.run.run_id for r in results],
        "claims": verdicts,
        "claims_over_runs": {c.key: c.verdict for c in combined},
        "logged_claims": {c.key: c.verdict for c in primary.logged or []},
    }


def _missing(document: Document, reader: StoreReader, entries: list[Entry]) -> None:
    document.add(Heading(2, "Missing experiments", anchor="missing"))
    if not entries:
        document.add(Paragraph("None: every experiment of the suite has a run of this profile."))
        return
    document.add(
        Paragraph(
            "No finished run of this profile at the profile's scale. The command that "
            "produces it, and its cost as measured by runs of this profile at another scale or "
            "unfinished (wall time, device): never a guess. [R3]'s GPU-hours are published, "
            "not ours."
        )
    )
    rows = []
    for entry in entries:
        measured = measure(reader, entry)
        lines = []
        for m in measured:
            settings = ", ".join(f"{k}={v}" for k, v in m.differs.items()) or "profile settings"
            text = f"{duration(m.wall)} on {m.device} ({settings})"
            if m.estimate is not None:
                text += f"; at the profile's settings at most {duration(m.estimate)} ({m.note})"
            else:
                text += f"; {m.note}"
            lines.append(f"run {m.run.run_id[:8]}: {text}")
        hours = reference.gpu_hours(entry.dataset, entry.experiment)
        rows.append(
            [
                entry.name,
                f"`{entry.command()}`",
                "; ".join(lines) if lines else "not measured yet",
                "-" if hours is None else f"{hours:g}",
            ]
        )
    document.add(Table(["experiment", "command", "measured cost", "[R3] GPU-hours"], rows))


def build(reader: StoreReader, profile: str, run_ids: list[str] | None = None) -> Report:
    """Reads the store and builds the report of ``profile``.

    Raises:
        ConfigError: an unknown profile, or a run id that is not a finished top-level run of
            an lfxai experiment of that profile (one line naming it).
    """
    entries = select(reader, profile, run_ids)
    title = f"Label-free explainability: the paper regenerated ({profile} profile)"
    document = Document(title)
    report = Report(profile, document, entries)
    if profile != "paper":
        note = PROFILE_NOTES.get(profile, "not the paper's settings")
        document.add(
            Paragraph(
                f"**{profile} profile**: {note}. Its numbers check the pipeline; they are not "
                "the paper's results.",
                css="banner",
            )
        )
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    document.add(
        Paragraph(
            f"Generated {generated} by lfxai {__version__} from the store "
            f"`{redact(reader.uri)}`: for every experiment of the suite, the newest finished "
            "run of the profile with the profile's settings (or, without one, at the profile's "
            "scale with the differences stated), and the other runs of its settings."
        )
    )
    for entry in entries:
        report.results[entry.name] = [read_result(reader, r, entry.experiment) for r in entry.runs]
    _summary(document, report)
    document.add(Heading(2, "How to read this report"))
    document.add(
        Bullets(
            [
                f"Verdicts: {LEGEND}",
                "Each claims table names the paper's section, the margin at the point that "
                "decided the verdict (in the claim's unit, with its tolerance), the sample size "
                "and the p-value; the rules under each claim are in the run's `claims.json`.",
                "Published values are the MLRC-2022 reproductions' (cited by key, see Sources); "
                "their spread runs from the lowest mean - std to the highest mean + std, and "
                "'inside?' says whether our mean falls within it.",
                "Figures are redrawn from the runs' logged tables and arrays.",
            ]
        )
    )
    for entry in entries:
        if entry.runs:
            results = report.results[entry.name]
            report.verdicts[entry.name] = _experiment(document, entry, results, reader.uri)
    _missing(document, reader, report.missing)
    document.add(Heading(2, "Sources"))
    document.add(Bullets([reference.citation(k) for k in reference.load()["sources"]]))
    return report


def _summary(document: Document, report: Report) -> None:
    rows = []
    for entry in report.entries:
        results = report.results.get(entry.name, [])
        if not results:
            rows.append([f"[{entry.name}](#missing)", "missing", "-", "-", "-", "-", "-"])
            continue
        run = results[0].run
        claims = aggregate([r.claims for r in results]) if len(results) > 1 else results[0].claims
        differs = ", ".join(f"{k}={v}" for k, v in entry.differs.items())
        rows.append(
            [
                f"[{entry.name}](#{entry.name})",
                f"{len(results)} run{'s' if len(results) > 1 else ''}",
                differs or "the profile's",
                _counts(claims),
                duration(wall_seconds(run)),
                run.params.get("device_used", "-"),
                run.tags.get(COMMIT_TAG, "-")[:12],
            ]
        )
    header = ["experiment", "runs", "settings", "verdicts", "wall time", "device", "code commit"]
    document.add(Heading(2, "Summary"), Table(header, rows))
