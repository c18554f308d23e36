"""What every experiment logs at its end: the paper's claims, and maps of a few examples.

The claims are judged on the experiment's result table (:mod:`lfxai.metrics.claims`) and logged
with the evidence they were tested on, so that ``lfxai report`` can recompute them.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from lfxai.metrics.claims import (
    CLAIMS,
    Claim,
    claim_metrics,
    claims_markdown,
    claims_title,
    epochs_label,
)
from lfxai.plugins import DatasetPlugin
from lfxai.tracking import Tracker

CLAIMS_EVIDENCE = "claims_evidence.npz"  # the values the claims are tested on (log_claims)


def log_claims(
    tracker: Tracker,
    experiment: str,
    table: pd.DataFrame,
    title: str,
    evidence: dict[str, np.ndarray] | None = None,
) -> list[Claim]:
    """Checks the paper's claims on an experiment's result table and logs the verdicts.

    Logs the evidence the claims are tested on (per-example or per-run values, see
    :mod:`lfxai.metrics.claims`) as ``claims_evidence.npz``, ``claims.json`` (statements,
    figures, verdicts, rules), ``claims.md`` (one line per claim, also appended to the run's
    description; titled with the profile and epochs) and the metrics ``claims/holds/<claim>``
    (1 holds, 0 otherwise), ``claims/verdict/<claim>`` (1 / 0 / -1: holds / inconclusive /
    fails) and ``claims/all_hold``, so the runs table can filter the runs by verdict.
    """
    evidence = {k: np.asarray(v) for k, v in (evidence or {}).items()}
    claims = CLAIMS[experiment](table, evidence)
    params, metrics = tracker.params(), tracker.metrics()
    title = claims_title(
        title, tracker.tags().get("lfxai.profile", "?"), epochs_label(params, metrics)
    )
    log_claim_report(tracker, experiment, claims, title, evidence)
    return claims


def log_claim_report(
    tracker: Tracker,
    experiment: str,
    claims: list[Claim],
    title: str,
    evidence: dict[str, np.ndarray],
) -> None:
    """Logs claims already judged, as :func:`log_claims` does (files, metrics, description).

    Args:
        tracker: the run to log to.
        experiment: what ``claims.json`` says they are the claims of.
        claims: the verdicts (e.g. of several experiments' rules, as ``explain`` checks).
        title: the report's whole title (see :func:`lfxai.metrics.claims.claims_title`).
        evidence: the values the claims were tested on (logged as ``claims_evidence.npz``).
    """
    if evidence:  # the report recomputes the verdicts from the same values
        tracker.log_arrays(evidence, CLAIMS_EVIDENCE)
    report = {"experiment": experiment, "title": title, "claims": [c.to_dict() for c in claims]}
    tracker.log_text(json.dumps(report, indent=2, allow_nan=True), "claims.json")
    markdown = claims_markdown(claims, title)
    tracker.log_text(markdown, "claims.md")
    metrics = claim_metrics(claims)
    if metrics:
        tracker.log_metrics(metrics)
    tracker.append_description(markdown)


def log_example_maps(
    tracker: Tracker,
    dataset: DatasetPlugin,
    inputs: torch.Tensor,
    maps: list[np.ndarray],
    methods: list[str],
    path: str,
    title: str = "",
) -> None:
    """A figure of a few examples (top row) and one row of importance maps per method.

    Args:
        tracker: the run to log to.
        dataset: draws the examples the way that suits them (images, time series).
        inputs: ``(n, ...)`` examples.
        maps: per method, ``(n, ...)`` importance of the same examples.
        methods: the methods' names, in the order of ``maps``.
        path: artifact path without extension (logged as PNG and PDF).
        title: figure title.
    """
    tracker.log_figure(dataset.example_figure(inputs, maps, methods, title), path)
