"""A run's results read back through a stand-in reader: evidence, claims and disagreements."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lfxai.experiments.verdicts import CLAIMS_EVIDENCE
from lfxai.metrics.claims import Claim
from lfxai.report import results
from lfxai.report.results import PRETEXT_ARRAYS, RunResult, mean_table, read_evidence
from lfxai.tracking import RunRecord


def _run(run_id: str = "r1") -> RunRecord:
    return RunRecord(run_id, "mnist-pretext", "1", "FINISHED", 0, 1, {}, {}, {})


class Reader:
    """Artifacts of each run as ``{(run_id, path): value}``; a missing one reads as None."""

    def __init__(self, artifacts: dict[tuple[str, str], object]) -> None:
        self.artifacts = artifacts

    def read_arrays(self, run_id: str, path: str):
        return self.artifacts.get((run_id, path))

    def read_table(self, run_id: str, path: str):
        return self.artifacts.get((run_id, path))

    def read_text(self, run_id: str, path: str):
        return self.artifacts.get((run_id, path))


def test_evidence_is_the_claims_npz_else_a_pretext_run_s_correlation_arrays():
    npz = {"a": np.arange(3.0)}
    assert read_evidence(Reader({("r1", CLAIMS_EVIDENCE): npz}), _run(), "pretext") is npz
    arrays = {
        ("r1", f"correlations/{n}.npy"): {"": np.full(2, i)} for i, n in enumerate(PRETEXT_ARRAYS)
    }
    del arrays[("r1", "correlations/examples_spearman.npy")]  # one not logged: left out
    arrays[("r2", "correlations/examples_pearson.npy")] = {"": np.zeros(2)}  # another run's
    found = read_evidence(Reader(arrays), _run(), "pretext")
    assert sorted(found) == ["examples_pearson", "features_pearson", "features_spearman"]
    np.testing.assert_array_equal(found["examples_pearson"], np.full(2, 2))
    # only pretext logged its evidence that way: other experiments without the npz have none
    assert read_evidence(Reader(arrays), _run(), "disvae") == {}


def _claim(key: str, verdict: str, rule: str = "a rule") -> Claim:
    return Claim(key, "s", "paper", "Section 4", "unit", rule, verdict=verdict)


def test_disagreements_name_each_claim_whose_recomputed_verdict_differs():
    result = RunResult(_run(), None)
    result.claims = [_claim("a", "holds"), _claim("b", "fails"), _claim("c", "holds")]
    result.logged = [_claim("a", "holds"), _claim("b", "holds")]
    assert result.current_rules
    assert result.disagreements() == [
        "b: holds in claims.json, fails recomputed",
        "c: None in claims.json, holds recomputed",
    ]
    result.logged = [_claim("a", "holds", rule=""), _claim("b", "holds")]  # an older file
    assert not result.current_rules and result.disagreements() == []
    result.logged = []
    assert not result.current_rules and result.disagreements() == []


def test_a_result_reads_its_table_evidence_claims_and_logged_claims(monkeypatch):
    table = pd.DataFrame({"x": [1.0]})
    seen = []

    def claims(t, evidence):
        seen.append((t, evidence))
        return [_claim("k", "holds")]

    monkeypatch.setitem(results.CLAIMS, "disvae", claims)
    logged = {"title": "T", "claims": [_claim("k", "fails").to_dict()]}
    reader = Reader(
        {
            ("r1", "disvae.csv"): table,
            ("r1", CLAIMS_EVIDENCE): {"e": np.ones(2)},
            ("r1", "claims.json"): json.dumps(logged),
        }
    )
    run = _run()
    result = results.read_result(reader, run, "disvae")
    assert result.run is run and result.table is table and set(result.evidence) == {"e"}
    assert seen == [(table, result.evidence)]
    assert [c.verdict for c in result.claims] == ["holds"]
    assert [c.verdict for c in result.logged] == ["fails"] and result.logged_title == "T"
    empty = results.read_result(Reader({}), _run(), "disvae")  # nothing logged
    assert empty.table is None and empty.evidence == {} and empty.claims == []
    assert empty.logged is None and empty.logged_title == ""


def test_the_mean_table_averages_a_value_over_runs_per_key():
    a = pd.DataFrame({"method": ["S", "R"], "k": [10, 10], "v": [1.0, 0.0]})
    b = pd.DataFrame({"method": ["S", "R"], "k": [10, 10], "v": [3.0, 0.0]})
    runs = [RunResult(_run(), a), RunResult(_run(), None), RunResult(_run(), b)]
    out = mean_table(runs, ["method", "k"], "v")
    assert out.columns.tolist() == ["method", "k", "mean", "std", "n"]
    assert out["method"].tolist() == ["S", "R"]  # in the order the runs list them
    assert out["mean"].tolist() == [2.0, 0.0] and out["n"].tolist() == [2, 2]
    assert out["std"].tolist() == pytest.approx([np.sqrt(2.0), 0.0])
    none = mean_table([RunResult(_run(), a)], ["method"], "missing")
    assert none.empty and none.columns.tolist() == ["method", "mean", "std", "n"]


def test_a_pretext_run_s_claims_use_its_correlation_arrays_and_a_bare_claims_file(monkeypatch):
    seen = []
    monkeypatch.setitem(results.CLAIMS, "pretext", lambda t, e: seen.append(e) or [])
    arrays = {("r1", f"correlations/{n}.npy"): {"": np.ones(2)} for n in PRETEXT_ARRAYS}
    reader = Reader(
        {("r1", "pretext_correlations.csv"): pd.DataFrame(), ("r1", "claims.json"): "{}", **arrays}
    )
    result = results.read_result(reader, _run(), "pretext")
    assert sorted(seen[0]) == sorted(PRETEXT_ARRAYS)  # the fallback of runs without the npz
    assert result.logged == [] and result.logged_title == ""  # a file without either key
