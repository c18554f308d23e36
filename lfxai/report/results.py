"""One run's results as the report reads them back: its table, evidence and claims.

The claims are recomputed from the logged table and evidence with the current rules
(:mod:`lfxai.metrics.claims`), so runs logged before a rule changed are judged like new
ones; the run's own ``claims.json`` is read too, and a run whose ``claims.json`` already
follows the current rules must agree with the recomputation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lfxai.experiments.verdicts import CLAIMS_EVIDENCE
from lfxai.metrics.claims import CLAIMS, Claim
from lfxai.tracking import RunRecord, StoreReader

TABLES = {  # the result table each experiment logs
    "consistency_features": "consistency_features.csv",
    "consistency_examples": "consistency_examples.csv",
    "roar_test": "roar_test.csv",
    "disvae": "disvae.csv",
    "pretext": "pretext_correlations.csv",
}
PRETEXT_ARRAYS = [f"{e}_{c}" for e in ("features", "examples") for c in ("pearson", "spearman")]


@dataclass
class RunResult:
    """One run of an experiment, read back.

    Attributes:
        run: the run.
        table: its result table (None: not logged).
        evidence: the values its claims are tested on (empty: none logged).
        claims: the claims recomputed with the current rules.
        logged: the run's own ``claims.json`` claims (None: no such file).
        logged_title: the title in its ``claims.json``.
    """

    run: RunRecord
    table: pd.DataFrame | None
    evidence: dict[str, np.ndarray] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    logged: list[Claim] | None = None
    logged_title: str = ""

    @property
    def current_rules(self) -> bool:
        """Whether the run's ``claims.json`` was written with the current rules."""
        return bool(self.logged) and all(c.rule for c in self.logged)

    def disagreements(self) -> list[str]:
        """Claims whose recomputed verdict differs from a current-rules ``claims.json``."""
        if not self.current_rules:
            return []
        logged = {c.key: c.verdict for c in self.logged or []}
        return [
            f"{c.key}: {logged.get(c.key)} in claims.json, {c.verdict} recomputed"
            for c in self.claims
            if logged.get(c.key) != c.verdict
        ]


def read_evidence(reader: StoreReader, run: RunRecord, experiment: str) -> dict[str, np.ndarray]:
    """``claims_evidence.npz``; for ``pretext`` runs logged before it, ``correlations/*.npy``."""
    arrays = reader.read_arrays(run.run_id, CLAIMS_EVIDENCE)
    if arrays is not None:
        return arrays
    if experiment == "pretext":
        found = {n: reader.read_arrays(run.run_id, f"correlations/{n}.npy") for n in PRETEXT_ARRAYS}
        return {n: a[""] for n, a in found.items() if a is not None}
    return {}


def read_result(reader: StoreReader, run: RunRecord, experiment: str) -> RunResult:
    """The run's table, evidence, recomputed claims and logged claims."""
    table = reader.read_table(run.run_id, TABLES[experiment])
    result = RunResult(run, table)
    if table is not None:
        result.evidence = read_evidence(reader, run, experiment)
        result.claims = CLAIMS[experiment](table, result.evidence)
    text = reader.read_text(run.run_id, "claims.json")
    if text is not None:
        logged = json.loads(text)
        result.logged = [Claim.from_dict(c) for c in logged.get("claims", [])]
        result.logged_title = str(logged.get("title", ""))
    return result


def mean_table(results: list[RunResult], keys: list[str], value: str) -> pd.DataFrame:
    """``value`` averaged over runs per ``keys``: columns ``keys``, ``mean``, ``std``, ``n``."""
    frames = [r.table for r in results if r.table is not None and value in r.table]
    if not frames:
        return pd.DataFrame(columns=[*keys, "mean", "std", "n"])
    grouped = pd.concat(frames).groupby(keys, sort=False)[value]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"count": "n"})
