"""The report's blocks, built from stand-in runs and results: no store, no training.

``select``, ``read_result``, ``measure`` and the experiment sections are replaced by stand-ins,
so each test pins what :mod:`lfxai.report.build` itself writes: the headings and anchors, the
paragraphs' words, the tables' headers and rows, the provenance links and times, the costs of
what is missing and the keys of ``report.json``.
"""

from __future__ import annotations

import json
import struct
import time
from datetime import UTC, datetime

import matplotlib as mpl
import pandas as pd
import pytest
from matplotlib import pyplot as plt

from lfxai import __version__
from lfxai.metrics.verdicts import LEGEND, Claim
from lfxai.report import build as build_module
from lfxai.report import reference
from lfxai.report.build import Report, build
from lfxai.report.collect import Entry
from lfxai.report.costs import Measurement
from lfxai.report.document import Bullets, Document, Figure, Heading, Paragraph, Table
from lfxai.report.results import RunResult
from lfxai.report.sections import Section
from lfxai.tracking import RunRecord

COMMIT = "0123456789abcdef0123456789abcdef01234567"
START = 1_767_323_040_000  # 2026-01-02 03:04:00 UTC, in milliseconds
TABLE = pd.DataFrame({"method": ["Saliency"], "representation_shift": [1.0]})
SUMMARY_HEADER = [
    "experiment",
    "runs",
    "settings",
    "verdicts",
    "wall time",
    "device",
    "code commit",
]
CLAIMS_HEADER = ["verdict", "paper", "claim", "margin at the deciding point", "test"]
PROVENANCE_HEADER = [
    "run id",
    "name",
    "code commit",
    "device",
    "wall time",
    "data digest",
    "started",
]


def record(
    run_id: str = "run1",
    *,
    tags: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    start: int = START,
    end: int | None = None,
    status: str = "FINISHED",
) -> RunRecord:
    """A run as the reader returns it (experiment id 7)."""
    return RunRecord(
        run_id, "exp", "7", status, start, end, tags or {}, params or {}, metrics or {}
    )


def claim(
    key: str = "shift_above_random/Saliency",
    verdict: str = "holds",
    *,
    section: str = "Section 4.1 (feature importance consistency)",
    figures: list[dict] | None = None,
    reason: str = "",
    rule: str = "one-sided sign flip test",
) -> Claim:
    """A judged claim with one point at ``k = 10%`` (margin 0.5 ± 0.1, n = 6, p = 0.015625)."""
    if figures is None:
        figures = [
            {
                "at": "k = 10%",
                "margin": 0.5,
                "tolerance": 0.1,
                "n": 6,
                "p_value": 0.015625,
                "verdict": verdict,
            }
        ]
    return Claim(
        key,
        f"{key} as the paper says",
        "the paper",
        section,
        "shift",
        rule,
        figures=figures,
        verdict=verdict,
        reason=reason,
    )


class Reader:
    """Stands in for a :class:`StoreReader`: the report only reads its ``uri`` itself."""

    def __init__(self, uri: str = "sqlite:///store/mlflow.db") -> None:
        self.uri = uri


class FixedClock(datetime):
    """``datetime`` whose ``now`` is 2026-03-04 05:06 UTC (asked for in UTC only)."""

    @classmethod
    def now(cls, tz=None):  # noqa: ANN001, ANN206
        assert tz is UTC
        return datetime(2026, 3, 4, 5, 6, 59, tzinfo=UTC)


@pytest.fixture()
def tokyo(monkeypatch):
    """The local time zone 9 h ahead of UTC: times the report shows must still be UTC."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture()
def sections(monkeypatch):
    """Every experiment's section: one note and one 1 x 1 in figure; records its calls."""
    calls = []

    def section(dataset: str, results: list[RunResult]) -> Section:
        calls.append((dataset, results))
        figure = plt.figure(figsize=(1, 1))
        return Section([Paragraph(f"section of {dataset}")], [("shift", figure, "Shift curves")])

    names = ("consistency_features", "consistency_examples", "roar_test", "pretext", "disvae")
    monkeypatch.setattr(build_module, "SECTIONS", dict.fromkeys(names, section))
    return calls


# _counts, _claims_table, _title -----------------------------------------------------------


def test_verdicts_are_counted_in_the_order_holds_fails_inconclusive_untested():
    claims = [
        claim("a", "untested"),
        claim("b", "holds"),
        claim("c", "inconclusive"),
        claim("d", "holds"),
        claim("e", "fails"),
    ]
    assert build_module._counts(claims) == "2 holds, 1 fails, 1 inconclusive, 1 untested"  # noqa: SLF001
    assert build_module._counts([claim("a", "inconclusive")]) == "1 inconclusive"  # noqa: SLF001
    assert build_module._counts([claim("a", "fails"), claim("b", "untested")]) == (  # noqa: SLF001
        "1 fails, 1 untested"
    )
    assert build_module._counts([]) == "no claim"  # noqa: SLF001


def test_a_claims_table_row_is_the_verdict_the_section_the_claim_its_margin_and_test():
    claims = [
        claim("a", "holds"),
        claim("b", "untested", section="Section 4.2", figures=[], reason="no evidence logged"),
        claim("c", "fails", section="Section 4.3 (pretext) (tasks)"),
    ]
    table = build_module._claims_table(claims)  # noqa: SLF001
    assert table.header == CLAIMS_HEADER
    assert table.rows == [
        [
            "**holds**",
            "Section 4.1",
            "a as the paper says",
            "0.5 shift at k = 10% (tolerance ±0.1)",
            "n = 6, p = 0.0156",
        ],
        ["**untested**", "Section 4.2", "b as the paper says", "", "no evidence logged"],
        [
            "**fails**",
            "Section 4.3",
            "c as the paper says",
            "0.5 shift at k = 10% (tolerance ±0.1)",
            "n = 6, p = 0.0156",
        ],
    ]
    assert build_module._claims_table([]).rows == []  # noqa: SLF001


def test_a_claims_title_is_the_logged_titles_model_else_the_data_set_and_experiment():
    entry = Entry("mnist", "consistency_features", "quick")
    params = {"config.n_epochs": "3"}
    logged = RunResult(
        record(params=params, metrics={"fit/epochs": 3.0}),
        TABLE,
        logged_title="MNIST denoising AE (d=4) · smoke profile · 1 epoch",
    )
    assert build_module._title(entry, logged) == (  # noqa: SLF001
        "MNIST denoising AE (d=4) · quick profile · 3 epochs"
    )
    untitled = RunResult(record(), TABLE)
    entry = Entry("ecg5000", "consistency_examples", "smoke")
    assert build_module._title(entry, untitled) == (  # noqa: SLF001
        "ECG5000 consistency_examples · smoke profile · epochs not logged"
    )


# _provenance ------------------------------------------------------------------------------


def test_provenance_links_each_run_to_a_tracking_server_and_shows_its_utc_start(tokyo):
    first = record(
        "abc",
        tags={
            "mlflow.runName": "#1 smoke",
            "mlflow.source.git.commit": COMMIT,
            "lfxai.data_digest": "d1g35t",
        },
        params={"device_used": "cuda"},
        metrics={"time/total_seconds": 200.0},
    )
    bare = record("def", start=START + 90 * 60_000)  # nothing logged, still running
    results = [RunResult(first, TABLE), RunResult(bare, TABLE)]
    table = build_module._provenance(results, "http://host:5000")  # noqa: SLF001
    assert table.header == PROVENANCE_HEADER
    assert table.rows == [
        [
            "[abc](http://host:5000/#/experiments/7/runs/abc)",
            "#1 smoke",
            "0123456789ab",
            "cuda",
            "3 min 20 s",
            "d1g35t",
            "2026-01-02 03:04 UTC",
        ],
        [
            "[def](http://host:5000/#/experiments/7/runs/def)",
            "",
            "-",
            "-",
            "-",
            "-",
            "2026-01-02 04:34 UTC",
        ],
    ]
    for server in ("https://mlflow.example.org", "https://mlflow.example.org/"):
        https = build_module._provenance([RunResult(bare, TABLE)], server)  # noqa: SLF001
        assert https.rows[0][0] == "[def](https://mlflow.example.org/#/experiments/7/runs/def)"
    for uri in ("sqlite:///store/mlflow.db", "file:///store/mlruns", "/store/http://x"):
        rows = build_module._provenance([RunResult(bare, TABLE)], uri).rows  # noqa: SLF001
        assert rows[0][0] == "def"  # a local store: no page to link to


def test_provenance_wall_time_is_end_minus_start_without_a_total():
    run = record("abc", end=START + 75_000)
    (row,) = build_module._provenance([RunResult(run, TABLE)], "sqlite:///x.db").rows  # noqa: SLF001
    assert row[4] == "1 min 15 s"


def test_provenance_links_never_carry_the_stores_credentials():
    run = record("abc")
    uri = "https://alice:s3cret@mlflow.example.org:5000/prefix?token=t0k"
    (row,) = build_module._provenance([RunResult(run, TABLE)], uri).rows  # noqa: SLF001
    assert row[0] == "[abc](https://mlflow.example.org:5000/prefix/#/experiments/7/runs/abc)"
    assert "s3cret" not in row[0] and "t0k" not in row[0] and "alice" not in row[0]


# _experiment ------------------------------------------------------------------------------


def test_an_experiment_section_of_two_runs(sections, monkeypatch):
    entry = Entry("mnist", "consistency_features", "smoke")
    entry.differs = {"feature_methods": "Saliency,Random", "n_plots": "3"}
    old_rules = [Claim.from_dict({"key": "a", "verdict": "holds"})]  # no rule: earlier rules
    disagreeing = [claim("a", "holds"), claim("b", "holds")]  # current rules, b differs
    results = [
        RunResult(
            record("r1", params={"config.n_epochs": "1"}, metrics={"fit/epochs": 1.0}),
            TABLE,
            claims=[claim("a", "holds"), claim("b", "inconclusive")],
            logged=old_rules,
            logged_title="MNIST denoising AE (d=4)",
        ),
        RunResult(
            record("r2"),
            TABLE,
            claims=[claim("a", "holds"), claim("b", "fails")],
            logged=disagreeing,
        ),
    ]
    document = Document("report")
    verdicts = build_module._experiment(document, entry, results, "http://host:5000")  # noqa: SLF001
    assert verdicts == {
        "runs": ["r1", "r2"],
        "claims": {"a": "holds", "b": "inconclusive"},
        "claims_over_runs": {"a": "inconclusive", "b": "inconclusive"},  # 2 runs: too few
        "logged_claims": {"a": "holds"},
    }
    assert sections == [("mnist", results)]
    blocks = document.blocks
    assert blocks[:3] == [
        Heading(2, "MNIST · consistency_features (smoke profile)", "mnist-consistency_features"),
        Paragraph("**Published:** Reproduced by all four reproductions. [R1] [R2] [R3] [R4]"),
        Paragraph(
            "Settings that differ from the smoke profile: `feature_methods=Saliency,Random`, "
            "`n_plots=3`."
        ),
    ]
    assert blocks[3] == Heading(3, "Claims: MNIST denoising AE (d=4) · smoke profile · 1 epoch")
    assert blocks[4].rows[1][0] == "**inconclusive**" and len(blocks[4].rows) == 2
    assert blocks[5] == Paragraph(
        "Verdicts recomputed with the current rules from the run's logged results; the run's "
        "own `claims.json` was written with earlier rules.",
        css="note",
    )
    assert blocks[6] == Paragraph(
        "**Disagreement** in run r2: b: holds in claims.json, fails recomputed"
    )
    assert blocks[7] == Heading(3, "Claims over 2 runs of the same settings (seeds differ)")
    assert blocks[8].header == CLAIMS_HEADER
    assert [row[0] for row in blocks[8].rows] == ["**inconclusive**", "**inconclusive**"]
    assert blocks[9] == Paragraph("section of mnist")
    figure = blocks[10]
    assert isinstance(figure, Figure) and figure.png.startswith(b"\x89PNG\r\n")
    assert figure.path == "figures/mnist-consistency_features-shift.png"
    assert figure.caption == "Shift curves (smoke profile)"
    assert blocks[11] == Heading(3, "Provenance")
    assert [row[0] for row in blocks[12].rows] == [
        "[r1](http://host:5000/#/experiments/7/runs/r1)",
        "[r2](http://host:5000/#/experiments/7/runs/r2)",
    ]
    assert len(blocks) == 13


def test_an_experiment_section_of_one_paper_run_with_current_rules(sections, monkeypatch):
    monkeypatch.setattr(reference, "finding", lambda d, e: None)  # nothing published
    entry = Entry("cifar10", "consistency_examples", "paper")
    agreeing = [claim("a", "holds")]
    result = RunResult(record("r1"), TABLE, claims=[claim("a", "holds")], logged=agreeing)
    document = Document("report")
    verdicts = build_module._experiment(document, entry, [result], "sqlite:///x.db")  # noqa: SLF001
    assert verdicts == {
        "runs": ["r1"],
        "claims": {"a": "holds"},
        "claims_over_runs": {},
        "logged_claims": {"a": "holds"},
    }
    blocks = document.blocks
    assert blocks[0] == Heading(
        2, "CIFAR-10 · consistency_examples", "cifar10-consistency_examples"
    )
    assert (
        blocks[1].text
        == "Claims: CIFAR-10 consistency_examples · paper profile · epochs not logged"
    )
    assert blocks[2].rows == [
        [
            "**holds**",
            "Section 4.1",
            "a as the paper says",
            "0.5 shift at k = 10% (tolerance ±0.1)",
            "n = 6, p = 0.0156",
        ]
    ]
    assert blocks[3] == Paragraph("section of cifar10")
    assert blocks[4].caption == "Shift curves"  # the paper's profile: no mark
    assert blocks[4].path == "figures/cifar10-consistency_examples-shift.png"
    assert blocks[5:7] == [Heading(3, "Provenance"), blocks[6]]
    assert blocks[6].rows[0][0] == "r1"
    assert len(blocks) == 7


def test_a_published_finding_without_sources_cites_none(sections):
    entry = Entry("cifar10", "consistency_examples", "smoke")
    result = RunResult(record("r1"), TABLE)  # no claims.json: nothing recomputed to note
    document = Document("report")
    verdicts = build_module._experiment(document, entry, [result], "sqlite:///x.db")  # noqa: SLF001
    assert verdicts["logged_claims"] == {} and verdicts["claims"] == {}
    assert document.blocks[1] == Paragraph(
        "**Published:** The paper's similarity rate peaks near 0.17; the reproductions get "
        "about 0.5."
    )
    texts = [b.text for b in document.blocks if isinstance(b, Paragraph)]
    assert not any("earlier rules" in t or "Disagreement" in t for t in texts)


def test_an_empty_claims_json_is_from_earlier_rules(sections):
    entry = Entry("mnist", "roar_test", "smoke")
    result = RunResult(record("r1"), TABLE, logged=[])
    document = Document("report")
    build_module._experiment(document, entry, [result], "sqlite:///x.db")  # noqa: SLF001
    notes = [b for b in document.blocks if isinstance(b, Paragraph) and b.css == "note"]
    assert len(notes) == 1 and notes[0].text.startswith("Verdicts recomputed")


def test_a_run_without_a_result_table_shows_nothing_but_its_heading(sections):
    entry = Entry("mnist", "pretext", "smoke")
    results = [RunResult(record("r1"), None), RunResult(record("r2"), TABLE)]
    document = Document("report")
    verdicts = build_module._experiment(document, entry, results, "http://host")  # noqa: SLF001
    assert verdicts == {"runs": ["r1", "r2"], "claims": {}}
    assert document.blocks == [
        Heading(2, "MNIST · pretext (smoke profile)", "mnist-pretext"),
        Paragraph(
            "**Published:** Explanations of different pretext tasks correlate weakly (table "
            "below). [R1] [R2] [R3] [R4]"
        ),
        Paragraph("Run r1 logged no result table: nothing to show."),
    ]
    assert sections == []


def test_a_figure_is_saved_as_png_cropped_to_its_content_and_closed():
    figure = plt.figure(figsize=(4, 4), dpi=50)  # 200 x 200 pixels, one letter in the middle
    figure.text(0.5, 0.5, "x")
    later = plt.figure(figsize=(1, 1))  # the current figure is another one
    with mpl.rc_context({"savefig.format": "svg"}):  # whatever the user's matplotlibrc says
        png = build_module._png(figure)  # noqa: SLF001
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    assert width < 100 and height < 100  # cropped ("tight"), not the whole 200 x 200
    assert not plt.fignum_exists(figure.number) and plt.fignum_exists(later.number)
    plt.close(later)


# _missing ---------------------------------------------------------------------------------


def test_missing_experiments_list_their_command_measured_cost_and_published_gpu_hours(
    monkeypatch,
):
    shortened = record("abcdefgh12345678")
    running = record("12345678abcdefgh", status="RUNNING")
    measured = {
        "mnist-consistency_examples": [
            Measurement(
                shortened,
                "cpu",
                100.0,
                {"n_epochs": "4", "n_runs": "1"},
                80.0,
                "extrapolated from its time per epoch",
            ),
            Measurement(running, "cuda", 12.0, {}, None, "RUNNING: partial"),
        ]
    }
    calls = []

    def measure(reader, entry):
        calls.append((reader, entry))
        return measured.get(entry.name, [])

    monkeypatch.setattr(build_module, "measure", measure)
    hours = {"mnist/consistency_examples": 3.0, "ecg5000/consistency_examples": 20.567}
    monkeypatch.setattr(reference, "gpu_hours", lambda d, e: hours.get(f"{d}/{e}"))
    entries = [
        Entry("mnist", "consistency_examples", "paper"),
        Entry("mnist", "roar_test", "paper"),
        Entry("ecg5000", "consistency_examples", "paper"),
    ]
    reader = Reader()
    document = Document("report")
    build_module._missing(document, reader, entries)  # noqa: SLF001
    assert calls == [(reader, e) for e in entries]
    heading, intro, table = document.blocks
    assert heading == Heading(2, "Missing experiments", "missing")
    assert intro == Paragraph(
        "No finished run of this profile at the profile's scale. The command that produces "
        "it, and its cost as measured by runs of this profile at another scale or unfinished "
        "(wall time, device): never a guess. [R3]'s GPU-hours are published, not ours."
    )
    assert table.header == ["experiment", "command", "measured cost", "[R3] GPU-hours"]
    assert table.rows == [
        [
            "mnist-consistency_examples",
            f"`{entries[0].command()}`",
            "run abcdefgh: 1 min 40 s on cpu (n_epochs=4, n_runs=1); at the profile's "
            "settings at most 1 min 20 s (extrapolated from its time per epoch); "
            "run 12345678: 12 s on cuda (profile settings); RUNNING: partial",
            "3",
        ],
        ["mnist-roar_test", f"`{entries[1].command()}`", "not measured yet", "-"],
        ["ecg5000-consistency_examples", f"`{entries[2].command()}`", "not measured yet", "20.567"],
    ]


def test_missing_gpu_hours_are_the_published_ones():
    document = Document("report")
    entry = Entry("mnist", "consistency_features", "smoke")
    build_module._missing(document, Reader(), [entry])  # noqa: SLF001  (nothing measured)
    assert document.blocks[2].rows == [
        ["mnist-consistency_features", f"`{entry.command()}`", "not measured yet", "0.376"]
    ]


def test_nothing_missing_is_said_in_one_line():
    document = Document("report")
    build_module._missing(document, Reader(), [])  # noqa: SLF001
    assert document.blocks == [
        Heading(2, "Missing experiments", "missing"),
        Paragraph("None: every experiment of the suite has a run of this profile."),
    ]


# build ------------------------------------------------------------------------------------

READING = [
    f"Verdicts: {LEGEND}",
    "Each claims table names the paper's section, the margin at the point that decided the "
    "verdict (in the claim's unit, with its tolerance), the sample size and the p-value; the "
    "rules under each claim are in the run's `claims.json`.",
    "Published values are the MLRC-2022 reproductions' (cited by key, see Sources); their "
    "spread runs from the lowest mean - std to the highest mean + std, and 'inside?' says "
    "whether our mean falls within it.",
    "Figures are redrawn from the runs' logged tables and arrays.",
]


@pytest.fixture()
def store(monkeypatch, sections):
    """``select`` returning three entries (two runs, one run, none); results by run id."""
    one = record(
        "one",
        tags={"mlflow.source.git.commit": COMMIT},
        params={"device_used": "cpu"},
        metrics={"time/total_seconds": 3725.0},
    )
    newest, older = record("newest"), record("older")
    claims = {
        "newest": [claim("a", "holds"), claim("b", "fails")],
        "older": [claim("a", "holds")],
        "one": [claim("a", "holds"), claim("b", "untested", figures=[]), claim("c", "holds")],
    }
    selected = []

    def select(reader, profile, run_ids=None):
        selected.append((reader, profile, run_ids))
        features = Entry("mnist", "consistency_features", profile, runs=[newest, older])
        examples = Entry("mnist", "consistency_examples", profile, runs=[one])
        examples.differs = {"n_test": "10", "feature_methods": "Saliency"}
        return [features, Entry("dsprites", "disvae", profile), examples]

    read = []

    def read_result(reader, run, experiment):
        read.append((reader, run.run_id, experiment))
        return RunResult(run, TABLE, claims=claims[run.run_id])

    monkeypatch.setattr(build_module, "select", select)
    monkeypatch.setattr(build_module, "read_result", read_result)
    measured = []

    def measure(reader, entry):
        measured.append((reader, entry.name))
        return []

    monkeypatch.setattr(build_module, "measure", measure)
    monkeypatch.setattr(build_module, "datetime", FixedClock)
    return selected, read, measured


def test_the_report_of_a_store(store, sections):
    selected, read, measured = store
    reader = Reader("http://bob:hunter2@host:5000")
    report = build(reader, "smoke", ["newest"])
    assert selected == [(reader, "smoke", ["newest"])]
    assert read == [
        (reader, "newest", "consistency_features"),
        (reader, "older", "consistency_features"),
        (reader, "one", "consistency_examples"),
    ]
    assert [d for d, _ in sections] == ["mnist", "mnist"]
    assert report.profile == "smoke"
    assert report.document.title == (
        "Label-free explainability: the paper regenerated (smoke profile)"
    )
    assert report.sources == ["newest", "older", "one"]
    assert [e.name for e in report.missing] == ["dsprites-disvae"]
    assert [[r.run.run_id for r in v] for v in report.results.values()] == [
        ["newest", "older"],
        [],  # missing: no result
        ["one"],
    ]
    assert list(report.results) == [
        "mnist-consistency_features",
        "dsprites-disvae",
        "mnist-consistency_examples",
    ]
    assert measured == [(reader, "dsprites-disvae")]
    assert report.verdicts["mnist-consistency_examples"]["claims"] == {
        "a": "holds",
        "b": "untested",
        "c": "holds",
    }
    assert list(report.verdicts) == ["mnist-consistency_features", "mnist-consistency_examples"]

    blocks = report.document.blocks
    assert blocks[0] == Paragraph(
        "**smoke profile**: seconds: a check that the pipeline runs, with tiny data and one "
        "epoch. Its numbers check the pipeline; they are not the paper's results.",
        css="banner",
    )
    assert blocks[1] == Paragraph(
        f"Generated 2026-03-04 05:06 UTC by lfxai {__version__} from the store "
        "`http://bob:***@host:5000`: for every experiment of the suite, the newest finished "
        "run of the profile with the profile's settings (or, without one, at the profile's "
        "scale with the differences stated), and the other runs of its settings."
    )
    assert blocks[2] == Heading(2, "Summary")
    assert blocks[3] == Table(
        SUMMARY_HEADER,
        [
            [  # two runs: their claims aggregated (too few runs to decide)
                "[mnist-consistency_features](#mnist-consistency_features)",
                "2 runs",
                "the profile's",
                "2 inconclusive",
                "-",
                "-",
                "-",
            ],
            ["[dsprites-disvae](#missing)", "missing", "-", "-", "-", "-", "-"],
            [
                "[mnist-consistency_examples](#mnist-consistency_examples)",
                "1 run",
                "n_test=10, feature_methods=Saliency",
                "2 holds, 1 untested",
                "1 h 02 min",
                "cpu",
                "0123456789ab",
            ],
        ],
    )
    assert blocks[4:6] == [Heading(2, "How to read this report"), Bullets(READING)]
    headings = [(b.level, b.text, b.anchor) for b in blocks if isinstance(b, Heading)]
    assert headings == [
        (2, "Summary", ""),
        (2, "How to read this report", ""),
        (2, "MNIST · consistency_features (smoke profile)", "mnist-consistency_features"),
        (3, "Claims: MNIST consistency_features · smoke profile · epochs not logged", ""),
        (3, "Claims over 2 runs of the same settings (seeds differ)", ""),
        (3, "Provenance", ""),
        (2, "MNIST · consistency_examples (smoke profile)", "mnist-consistency_examples"),
        (3, "Claims: MNIST consistency_examples · smoke profile · epochs not logged", ""),
        (3, "Provenance", ""),
        (2, "Missing experiments", "missing"),
        (2, "Sources", ""),
    ]
    provenance = blocks[blocks.index(Heading(3, "Provenance")) + 1]
    assert provenance.rows[0][0] == "[newest](http://host:5000/#/experiments/7/runs/newest)"
    missing = blocks[blocks.index(Heading(2, "Missing experiments", "missing")) + 2]
    assert [row[0] for row in missing.rows] == ["dsprites-disvae"]
    assert blocks[-1] == Bullets([reference.citation(k) for k in ("R1", "R2", "R3", "R4")])
    assert blocks[-1].items[0].startswith("[R1] ")


def test_the_paper_report_has_no_banner(store):
    report = build(Reader(), "paper")
    assert store[0][0][1:] == ("paper", None)
    assert report.document.title == (
        "Label-free explainability: the paper regenerated (paper profile)"
    )
    first = report.document.blocks[0]
    assert first.css == "" and first.text.startswith("Generated 2026-03-04 05:06 UTC by lfxai")
    assert "`sqlite:///store/mlflow.db`" in first.text
    assert not any(getattr(b, "css", "") == "banner" for b in report.document.blocks)


def test_the_banner_of_the_quick_and_of_an_unknown_profile(store):
    quick = build(Reader(), "quick").document.blocks[0]
    assert quick == Paragraph(
        "**quick profile**: minutes on a 2-core CPU: fewer epochs and examples than the "
        "paper. Its numbers check the pipeline; they are not the paper's results.",
        css="banner",
    )
    other = build(Reader(), "custom").document.blocks[0]
    assert other.text == (
        "**custom profile**: not the paper's settings. Its numbers check the pipeline; they "
        "are not the paper's results."
    )


# Report -----------------------------------------------------------------------------------


def test_a_written_report_lists_its_sources_verdicts_and_the_commands_of_what_is_missing(
    tmp_path,
):
    entries = [
        Entry("mnist", "consistency_features", "smoke", runs=[record("r1"), record("r2")]),
        Entry("mnist", "pretext", "smoke"),
        Entry("ecg5000", "consistency_examples", "smoke", runs=[record("r3")]),
        Entry("dsprites", "disvae", "smoke"),
    ]
    document = Document("Title", [Figure("figures/x.png", b"PNG!", "x"), Paragraph("p")])
    verdicts = {"mnist-consistency_features": {"claims": {"a": "holds"}}}
    report = Report("smoke", document, entries, verdicts=verdicts)
    assert report.sources == ["r1", "r2", "r3"]
    assert report.missing == [entries[1], entries[3]]
    assert report.write(tmp_path / "out") == tmp_path / "out" / "index.html"
    assert (tmp_path / "out" / "figures" / "x.png").read_bytes() == b"PNG!"
    summary = json.loads((tmp_path / "out" / "report.json").read_text())
    assert summary == {
        "profile": "smoke",
        "sources": ["r1", "r2", "r3"],
        "experiments": verdicts,
        "missing": {
            "mnist-pretext": entries[1].command(),
            "dsprites-disvae": entries[3].command(),
        },
    }
    assert (tmp_path / "out" / "index.md").read_text().startswith("# Title\n")
    assert "<h1>Title</h1>" in (tmp_path / "out" / "index.html").read_text()
