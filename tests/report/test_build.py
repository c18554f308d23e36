"""The report of a store: which runs it shows, their verdicts, what is missing and its cost."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from lfxai.config import ConfigError
from lfxai.experiments.registry import entries
from lfxai.report.build import build
from lfxai.report.costs import duration, measure
from lfxai.tracking import StoreReader, Tracker
from tests.report.conftest import feature_evidence, feature_table

FEATURES = "mnist-consistency_features"


def _logged_verdicts(run_id: str) -> dict[str, str]:
    text = StoreReader().read_text(run_id, "claims.json")
    return {c["key"]: c["verdict"] for c in json.loads(text)["claims"]}


def test_a_store_with_some_experiments(make_run, tmp_path):
    table = feature_table([1.0, 1.5, 2.0], [0.5, 1.0, 2.0])
    older = make_run(table=table, evidence=feature_evidence(6, 0.5), settings={"seed": "3"})
    newest = make_run(table=table, evidence=feature_evidence(6, 0.5))
    # shortened (another n_*): not a result; a variant: not while a run of the profile's
    # settings exists; a run of the quick profile: not this report's
    make_run(table=table, evidence=feature_evidence(6, 0.5), settings={"n_epochs": "3"})
    make_run(table=table, settings={"feature_methods": "Saliency,Random"})
    make_run(table=table, profile="quick")
    # a shortened run of a missing experiment: its cost, measured and extrapolated
    shortened = make_run(
        experiment="consistency_examples",
        settings={"n_epochs": "4"},
        metrics={"fit/epochs": 4.0, "time/total_seconds": 100.0},
    )
    Tracker(shortened).log_metrics({"time/fit_seconds_per_epoch": 10.0})

    report = build(StoreReader(), "smoke")
    assert report.sources == [newest, older]  # the newest first, then the same settings
    verdicts = report.verdicts[FEATURES]
    assert (
        verdicts["claims"]
        == _logged_verdicts(newest)
        == {
            "shift_above_random/Saliency": "holds"  # 6 examples all above: p = 1/64
        }
    )
    # two runs: too few to test over runs (5 needed)
    assert verdicts["claims_over_runs"] == {"shift_above_random/Saliency": "inconclusive"}
    missing = {e.name for e in report.missing}
    assert missing == {f"{d}-{e}" for d, e in entries()} - {FEATURES}

    index = report.write(tmp_path)
    markdown = (tmp_path / "index.md").read_text()
    assert "> **smoke profile**: seconds" in markdown  # marked as not the paper's settings
    assert "### Claims: MNIST denoising AE (d=4) · smoke profile · 1 epoch" in markdown
    assert "| **holds** | Section 4.1 |" in markdown
    assert "Claims over 2 runs of the same settings (seeds differ)" in markdown
    command = (
        "mlflow run . -e mnist -P name=consistency_examples -P profile=smoke --env-manager "
        "local --experiment-name mnist-consistency_examples"
    )
    assert f"`{command}`" in markdown
    # 4 epochs of 10 s measured; the profile's 2 epochs: 100 - 2 * 10 s
    assert (
        f"run {shortened[:8]}: 1 min 40 s on cpu (n_epochs=4); at the profile's settings at "
        "most 1 min 20 s (extrapolated from its time per epoch)"
    ) in markdown
    figures = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert figures == [f"{FEATURES}-shift.png"]
    assert f"](figures/{FEATURES}-shift.png)" in markdown
    html = index.read_text()
    assert "data:image/png;base64," in html and 'src="figures/' not in html
    summary = json.loads((tmp_path / "report.json").read_text())
    assert summary["sources"] == [newest, older] and summary["missing"][
        "mnist-consistency_examples"
    ] == (command)


def test_a_run_logged_with_earlier_rules_is_recomputed_and_a_disagreement_shown(make_run):
    table = feature_table([1.0, 1.5, 2.0], [0.5, 1.0, 2.0])
    run_id = make_run(table=table)  # no evidence: inconclusive under the current rules
    old = {"claims": [{"key": "shift_above_random/Saliency", "verdict": "holds", "holds": True}]}
    Tracker(run_id).log_text(json.dumps(old), "claims.json")
    report = build(StoreReader(), "smoke")
    assert report.verdicts[FEATURES]["claims"] == {"shift_above_random/Saliency": "inconclusive"}
    text = "\n".join(getattr(b, "text", "") for b in report.document.blocks)
    assert "written with earlier rules" in text and "Disagreement" not in text

    current = json.loads(StoreReader().read_text(make_run(table=table), "claims.json"))
    current["claims"][0]["verdict"] = "holds"  # edited by hand: no longer what the data say
    newest = make_run(table=table)
    Tracker(newest).log_text(json.dumps(current), "claims.json")
    report = build(StoreReader(), "smoke")
    text = "\n".join(getattr(b, "text", "") for b in report.document.blocks)
    assert (
        f"**Disagreement** in run {newest}: shift_above_random/Saliency: holds in claims.json, "
        "inconclusive recomputed"
    ) in text


def test_an_empty_store_gives_a_report_of_what_is_missing(mlflow_store, tmp_path):
    report = build(StoreReader(), "paper")
    assert report.sources == [] and len(report.missing) == len(entries())
    report.write(tmp_path)
    markdown = (tmp_path / "index.md").read_text()
    assert "smoke profile" not in markdown and "> **" not in markdown  # paper: no banner
    assert markdown.count("| missing |") == len(entries())
    assert "not measured yet" in markdown


def test_bad_input_is_one_line_naming_it(make_run):
    run_id = make_run(table=feature_table([1.0, 1.5, 2.0], [0.5, 1.0, 2.0]))
    reader = StoreReader()
    with pytest.raises(ConfigError, match=r"^unknown profile 'final'; valid choices: \['paper'"):
        build(reader, "final")
    with pytest.raises(ConfigError, match="run id 'nope': no run 'nope' in the store"):
        build(reader, "smoke", ["nope"])
    with pytest.raises(ConfigError, match="is a 'smoke'-profile run; this report is of the"):
        build(reader, "paper", [run_id])
    other = MlflowClient().create_run("0").info.run_id  # a run of Default, not an lfxai one
    with pytest.raises(ConfigError) as error:
        build(reader, "smoke", [other])
    assert str(error.value).startswith(f"run id {other} is a run of 'Default', not a top-level")
    assert "\n" not in str(error.value)
    assert build(reader, "smoke", [run_id]).sources == [run_id]


def test_a_missing_experiment_costs_what_its_shortened_run_and_nested_runs_measured(make_run):
    # disvae at the paper profile: 100 epochs, 5 runs; measured: 2 epochs, 1 run, 2 models
    parent = make_run(
        experiment="disvae",
        profile="paper",
        settings={"n_epochs": "2", "n_runs": "1"},
        metrics={"time/total_seconds": 100.0},
    )
    client = MlflowClient()
    experiment_id = client.get_run(parent).info.experiment_id
    for start in (1_000_000, 2_000_000):  # two models of 40 s, 10 s per epoch, 2 epochs
        child = client.create_run(
            experiment_id, start_time=start, tags={"mlflow.parentRunId": parent}
        ).info.run_id
        Tracker(child).log_metrics({"fit/epochs": 2.0, "time/fit_seconds_per_epoch": 10.0})
        client.set_terminated(child, end_time=start + 40_000)
    report = build(StoreReader(), "paper")
    (entry,) = [e for e in report.missing if e.name == "mnist-disvae"]
    (measured,) = measure(StoreReader(), entry)
    assert (measured.wall, measured.device) == (100.0, "cpu")
    assert measured.differs == {"n_epochs": "2", "n_runs": "1"}
    # 20 s outside the models; each model 40 s + 98 more epochs of 10 s; 5 runs instead of 1
    assert measured.estimate == 20 + (2 * 40 + 2 * 98 * 10) * 5
    assert measured.note == "extrapolated from its time per epoch and its 2 nested runs"
    assert duration(measured.estimate) == "2 h 50 min"


def test_without_a_run_of_the_profiles_settings_a_variant_is_shown_with_its_differences(make_run):
    table = feature_table([1.0, 1.5, 2.0], [0.5, 1.0, 2.0])
    variant = make_run(table=table, settings={"feature_methods": "Saliency,Random"})
    make_run(table=table, settings={"n_test": "10"})  # a smaller scale: never a result
    report = build(StoreReader(), "smoke")
    (entry,) = [e for e in report.entries if e.name == FEATURES]
    assert [r.run_id for r in entry.runs] == [variant]
    assert entry.differs == {"feature_methods": "Saliency,Random"}
    text = "\n".join(getattr(b, "text", "") for b in report.document.blocks)
    assert "Settings that differ from the smoke profile: `feature_methods=Saliency,Random`." in text
