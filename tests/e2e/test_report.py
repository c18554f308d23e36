"""`mlflow run . -e report`: the paper regenerated from a remote store of smoke runs.

Three MNIST experiments run at the smoke profile (concurrently, seconds each on an idle
machine) against a fresh MLflow tracking server on PostgreSQL (fixtures of
``tests/e2e/conftest.py``): the report must find every run, agree with each run's
``claims.json``, list the missing experiments with their commands, render its figures in
headless Chromium, and be logged as a run of the experiment ``report`` that names its sources.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

import lfxai.experiments  # noqa: F401  (fills the registry)
from lfxai.experiments.registry import entries
from tests.helpers import REPO, kill_group, mlflow_run, venv_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.data, pytest.mark.database]

SMOKE = {  # experiment -> the settings that keep its smoke run short
    "consistency_features": {"feature_methods": "Saliency,Random"},
    "consistency_examples": {"example_methods": "DKNN,SimplEx"},
    "roar_test": {"feature_methods": "Saliency,Random"},
}

TITLES = {
    "mnist-consistency_features": "MNIST denoising AE (d=4) · smoke profile · 1 epoch",
    "mnist-consistency_examples": "MNIST denoising AE (d=4) · smoke profile · 2 epochs",
    "mnist-roar_test": "ROAR, MNIST reconstruction AE (d=4) · smoke profile · 1 epoch",
}


@pytest.fixture(scope="module")
def signed_in(tracking_server):
    """The server's worker credentials, also in this process's environment (MLflow's client
    reads them there) while the module's tests run."""
    saved = {key: os.environ.get(key) for key in tracking_server.credentials}
    os.environ.update(tracking_server.credentials)
    yield tracking_server.credentials
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def smoke_runs(tracking_server, signed_in, data_dir) -> tuple[str, dict[str, str]]:
    """The server's URI and ``{<dataset>-<experiment>: run id}`` of the finished smoke runs."""
    uri = tracking_server.uri
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    workers = {}
    try:
        for name, settings in SMOKE.items():
            command = [mlflow_bin, "run", ".", "-e", "mnist", "-P", f"name={name}"]
            params = {"profile": "smoke", "data_dir": str(data_dir), **settings}
            for key, value in params.items():
                command += ["-P", f"{key}={value}"]
            command += ["--env-manager", "local", "--experiment-name", f"mnist-{name}"]
            workers[name] = subprocess.Popen(
                command,
                cwd=REPO,
                env={**venv_env(uri), **signed_in},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        outputs = {name: worker.communicate(timeout=1200)[0] for name, worker in workers.items()}
    finally:
        for worker in workers.values():
            if worker.returncode is None:
                kill_group(worker)
                worker.communicate()
    client = MlflowClient(tracking_uri=uri)
    runs = {}
    for name, worker in workers.items():
        assert worker.returncode == 0, outputs[name][-4000:]
        experiment = client.get_experiment_by_name(f"mnist-{name}")
        found = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'")
        (run,) = [r for r in found if "mlflow.parentRunId" not in r.data.tags]  # not nested
        runs[f"mnist-{name}"] = run.info.run_id
    return uri, runs


@pytest.fixture(scope="module")
def report(smoke_runs, signed_in, tmp_path_factory) -> tuple[str, dict[str, str], Path, object]:
    """`mlflow run . -e report -P profile=smoke -P out=<folder>`: the server, the sources,
    the report's folder and its run."""
    uri, runs = smoke_runs
    out = tmp_path_factory.mktemp("report")
    params = {"profile": "smoke", "out": str(out)}
    done = mlflow_run("report", params, uri, env=signed_in, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("report")
    (run,) = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'")
    return uri, runs, out, run


def test_every_run_is_found_and_its_verdicts_are_its_claims_json(report, tmp_path):
    uri, runs, out, _ = report
    summary = json.loads((out / "report.json").read_text())
    assert sorted(summary["sources"]) == sorted(runs.values())
    client = MlflowClient(tracking_uri=uri)
    for name, run_id in runs.items():
        (tmp_path / name).mkdir()
        local = client.download_artifacts(run_id, "claims.json", str(tmp_path / name))
        logged = json.loads(Path(local).read_text())
        assert logged["title"] == TITLES[name]  # the profile and the epochs in every title
        verdicts = {c["key"]: c["verdict"] for c in logged["claims"]}
        assert verdicts and summary["experiments"][name]["claims"] == verdicts
        assert summary["experiments"][name]["runs"] == [run_id]


def test_missing_experiments_are_listed_with_their_commands(report):
    _, runs, out, _ = report
    summary = json.loads((out / "report.json").read_text())
    expected = {f"{d}-{e}" for d, e in entries()} - set(runs)
    assert set(summary["missing"]) == expected
    markdown = (out / "index.md").read_text()
    assert "> **smoke profile**" in markdown
    for name, command in summary["missing"].items():
        assert command.startswith("mlflow run . -e ") and f"--experiment-name {name}" in command
        assert f"`{command}`" in markdown


def _figure_bands(shown: np.ndarray, hidden: np.ndarray) -> list[int]:
    """Pixels that differ per vertical band of the page: where an image drew something."""
    rows = np.abs(shown.astype(int) - hidden.astype(int)).max(axis=2) > 24
    per_row = rows.sum(axis=1)
    bands, count, gap = [], 0, 0
    for value in per_row:
        if value:
            count, gap = count + int(value), 0
        elif count:
            gap += 1
            if gap > 20:  # a stretch of the page without any image: the band ended
                bands.append(count)
                count = 0
    return [*bands, count] if count else bands


def test_the_html_shows_its_figures_in_headless_chromium(report, chromium, tmp_path):
    _, _, out, _ = report
    html = (out / "index.html").read_text()
    figures = html.count('<img src="data:image/png;base64,')
    assert figures == len(list((out / "figures").glob("*.png"))) >= len(SMOKE)
    # The same page with every image hidden (layout kept): what differs is what they draw.
    hidden = tmp_path / "hidden.html"
    hidden.write_text(html.replace("</style>", "img { visibility: hidden; }</style>", 1))
    height = 9000
    shown_png = chromium(out / "index.html", tmp_path / "shown.png", height=height)
    hidden_png = chromium(hidden, tmp_path / "hidden.png", height=height)
    shown = np.asarray(Image.open(shown_png).convert("RGB"))
    bands = _figure_bands(shown, np.asarray(Image.open(hidden_png).convert("RGB")))
    assert len(bands) >= len(SMOKE), bands  # one band per figure on the page
    assert min(bands) > 5000, bands  # each figure draws thousands of non-blank pixels


def test_the_report_run_holds_the_report_and_names_its_sources(report):
    uri, runs, _, run = report
    client = MlflowClient(tracking_uri=uri)
    tags = run.data.tags
    assert sorted(tags["lfxai.report.sources"].split(",")) == sorted(runs.values())
    assert tags["lfxai.report.profile"] == "smoke"
    for name, run_id in runs.items():
        assert tags[f"lfxai.report.source.{name}"] == run_id
        assert f"/runs/{run_id})" in tags["mlflow.note.content"]  # a link in its description
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"index.md", "index.html", "report.json", "figures"} <= artifacts


def test_bad_input_ends_with_one_line_and_no_traceback(report):
    uri, _, _, run = report
    unknown = mlflow_run("report", {"profile": "final"}, uri, timeout=300)
    assert unknown.returncode != 0
    assert "error: unknown profile 'final'; valid choices: ['paper', 'quick', 'smoke']" in (
        unknown.stderr
    )
    other = mlflow_run("report", {"profile": "smoke", "run_ids": run.info.run_id}, uri)
    assert other.returncode != 0
    assert f"error: run id {run.info.run_id} is a run of 'report', not a top-level run" in (
        other.stderr
    )
    for done in (unknown, other):
        assert "Traceback" not in done.stderr
