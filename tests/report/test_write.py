"""A built report is written into a new or an existing folder, figures and all."""

from __future__ import annotations

import json
import math

from lfxai.report.build import Report
from lfxai.report.document import Document, Figure, Paragraph


def test_a_report_writes_into_a_new_nested_folder_and_again_over_itself(tmp_path) -> None:
    document = Document("Reproduction", [Paragraph("text"), Figure("figures/a.png", b"PNG", "A")])
    report = Report("smoke", document, [], verdicts={"mnist-pretext": {"margin": float("nan")}})
    folder = tmp_path / "docs" / "reproduction"  # neither exists yet
    for _ in range(2):  # regenerating a report overwrites it in place
        assert report.write(folder) == folder / "index.html"
    assert (folder / "figures" / "a.png").read_bytes() == b"PNG"
    assert "Reproduction" in (folder / "index.md").read_text()
    text = (folder / "report.json").read_text()
    assert text.startswith('{\n  "profile": "smoke"')  # indented: it is read in reviews
    summary = json.loads(text)
    margin = summary["experiments"]["mnist-pretext"].pop("margin")  # NaN is written, not refused
    assert math.isnan(margin)
    assert summary == {
        "profile": "smoke",
        "sources": [],
        "experiments": {"mnist-pretext": {}},
        "missing": {},
    }
