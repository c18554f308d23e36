"""The published numbers file: complete, cited, and read the way the report states."""

from __future__ import annotations

import tomllib

import pytest

import lfxai.experiments  # noqa: F401  (fills the registry)
from lfxai.experiments.registry import entries
from lfxai.plugins import get_dataset
from lfxai.report import reference
from tests.helpers import REPO


def test_every_value_is_cited_and_every_experiment_known():
    data = reference.load()
    sources = set(data["sources"])
    assert sources == {"R1", "R2", "R3", "R4"}
    assert all(s["doi"].startswith("10.5281/zenodo.") for s in data["sources"].values())
    pretext_tasks = set(get_dataset("mnist").pretext_tasks)
    for kind in ("features_pearson", "examples_pearson"):
        for row in data["pretext"][kind]:
            assert set(row["tasks"]) <= pretext_tasks
            values = reference.published(row)
            assert values and {v.source for v in values} <= sources
    for dataset in ("mnist", "dsprites"):
        for loss in ("beta_vae", "beta_tc_vae"):
            assert set(data["disvae"][dataset][loss]) == {1, 5, 10}
    assert set(data["findings"]) <= {f"{d}/{e}" for d, e in entries()}
    for finding in data["findings"].values():
        assert set(finding["sources"]) <= sources
    # [R3] timed every experiment but ROAR
    assert set(data["compute"]["R3_gpu_hours"]) == {f"{d}/{e}" for d, e in entries()} - {
        "mnist/roar_test"
    }


def test_a_few_transcribed_values():
    data = reference.load()
    (row,) = [r for r in data["pretext"]["features_pearson"] if r["tasks"][1] == "denoising"]
    assert (row["R1"], row["R2"], row["R4"]) == ([0.41, 0.02], [0.38, 0.02], [0.41, 0.02])
    assert data["disvae"]["dsprites"]["beta_tc_vae"][10] == {
        "R4": [0.369, 0.065],
        "R3": [0.403, None],
    }
    assert reference.gpu_hours("ecg5000", "consistency_examples") == 20.567
    assert reference.citation("R3") == (
        "[R3] Langezaal, Belleman, Veenboer, Noorthoek. ReScience C (MLRC 2022), DOI "
        "10.5281/zenodo.8173656."
    )


def test_spread_runs_from_the_lowest_low_to_the_highest_high_without_outliers():
    values = reference.published(
        {"R1": [0.41, 0.02], "R2": [0.38, 0.02], "R3": [0.02, None]}, outliers={"R3"}
    )
    assert reference.spread(values) == (0.36, 0.43)  # R3 shown, but left out
    assert reference.inside(0.42, (0.36, 0.43)) == "yes"
    assert reference.inside(0.2, (0.36, 0.43)) == "no"
    # one bare value is no interval: nothing to be inside of
    assert reference.spread(reference.published({"R3": [0.08, None]})) is None
    assert reference.inside(0.08, None) == "-"


def test_the_file_ships_as_package_data():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["lfxai"]
    assert "reference/*.yaml" in globs
    assert (REPO / "lfxai" / "reference" / reference.REFERENCE_FILE).is_file()


def test_a_value_without_std_spans_only_its_mean_and_the_bounds_are_inside():
    values = reference.published({"R1": [0.4, 0.02], "R3": [0.5, None], "R4": [0.3, None]})
    low, high = reference.spread(values)  # R3 and R4 widen it by their means, not by a unit
    assert (low, high) == (pytest.approx(0.3), pytest.approx(0.5))
    assert reference.inside(low, (low, high)) == reference.inside(high, (low, high)) == "yes"
    assert reference.inside(float("nan"), (low, high)) == "-"
    assert reference.inside(None, (low, high)) == "-"


def test_findings_are_looked_up_per_data_set_and_experiment():
    found = reference.finding("ecg5000", "consistency_examples")
    assert found == reference.load()["findings"]["ecg5000/consistency_examples"]
    assert set(found) == {"sources", "text"} and found["text"]
    assert reference.finding("ecg5000", "disvae") is None  # no reproduction ran it
