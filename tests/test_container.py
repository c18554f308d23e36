"""The image: build it with podman and run an entry point in it, the store outside the container.

Everything goes through ``scripts/container.sh`` (the same commands the README gives): install
podman & co. if missing, build a stand-in ``python:3.11-slim`` if there is no registry, build the
Dockerfile, run ``mlflow run`` inside the container with the MLflow store in a host folder, then
read that store on the host. Skipped (with the reason) only where podman cannot be installed,
and never in CI (``CI=true``): there a set-up that fails is a failure.

Minutes on a fresh machine (the dependency layer downloads torch with its CUDA wheels); later
builds reuse the cached layers under ~/.cache/lfxai-container.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import in_ci, run_in_session

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "container.sh"
PROJECT_IN_IMAGE = "/opt/lfxai"

pytestmark = pytest.mark.container


def _sh(
    *args: str, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # In a session of its own: a timeout kills podman and its children with the script.
    return run_in_session(
        ["bash", str(SCRIPT), *args], timeout, cwd=ROOT, env={**os.environ, **(env or {})}
    )


def _tail(proc: subprocess.CompletedProcess[str], n: int = 6000) -> str:
    out, err = proc.stdout[-n:], proc.stderr[-n:]
    return f"exit {proc.returncode}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"


@pytest.fixture(scope="module")
def image() -> str:
    """Podman ready, base image present, the project's image built: its tag."""
    setup = _sh("setup", timeout=900)
    if setup.returncode != 0 or shutil.which("podman") is None:
        reason = f"podman is not installed and cannot be installed here:\n{_tail(setup, 2000)}"
        if in_ci():
            pytest.fail(f"CI=true: the container tests must run, but {reason}")
        pytest.skip(reason)
    base = _sh("build-base", timeout=900)
    assert base.returncode == 0, f"stand-in base image failed:\n{_tail(base)}"
    build = _sh("build", timeout=2400)
    assert build.returncode == 0, f"podman build failed:\n{_tail(build)}"
    return os.environ.get("LFXAI_IMAGE", "localhost/lfxai:latest")


def _run(store: Path, *cmd: str, offline: bool = True) -> subprocess.CompletedProcess[str]:
    """`scripts/container.sh run STORE cmd...`; offline: no network at all in the container."""
    env = {"LFXAI_RUN_NETWORK": "none"} if offline else {}
    return _sh("run", str(store), *cmd, timeout=1200, env=env)


def _mlflow_run(*params: str, entry_point: str = "mnist") -> list[str]:
    args = ["mlflow", "run", PROJECT_IN_IMAGE, "-e", entry_point]
    for p in params:
        args += ["-P", p]
    return [*args, "--env-manager", "local"]


def test_image_defaults(image: str, tmp_path: Path):
    """Non-root user, venv first on PATH, store env, default command, torch's CUDA build."""
    inspect = _sh("podman", "image", "inspect", "--format", "{{json .Config}}", image, timeout=120)
    assert inspect.returncode == 0, _tail(inspect)
    config = inspect.stdout
    assert '"User":"1000:1000"' in config.replace(" ", "")
    assert "MLFLOW_TRACKING_URI=sqlite:////mlflow/mlflow.db" in config
    assert "PATH=/opt/venv/bin:" in config
    for part in ("-e", "mnist", "name=consistency_features", "profile=quick", "local"):
        assert f'"{part}"' in config

    probe = _run(
        tmp_path,
        "python",
        "-c",
        "import os, shutil, torch, lfxai, platform; "
        "print(os.getuid(), shutil.which('python'), torch.__version__, torch.version.cuda, "
        "platform.machine(), os.path.isdir('/opt/lfxai/data/mnist/MNIST/raw'), "
        "os.path.isdir('/opt/lfxai/data/ecg5000/ECG5000'))",
    )
    assert probe.returncode == 0, _tail(probe)
    uid, python, torch_version, cuda, machine, mnist, ecg = probe.stdout.split()[-7:]
    assert uid != "0"
    assert python == "/opt/venv/bin/python"
    assert torch_version.startswith("2.14.1")
    assert (mnist, ecg) == ("True", "True"), "data sets not provisioned in the image"
    if machine == "x86_64":  # PyPI's torch for x86_64 Linux is the CUDA build
        assert cuda != "None", f"torch {torch_version} in the image has no CUDA"


def test_mnist_smoke_run_lands_in_host_store(image: str, tmp_path: Path):
    """`mlflow run` inside the (offline) container; the host reads the run back from its folder."""
    store = tmp_path / "store"
    proc = _run(store, *_mlflow_run("name=consistency_features", "profile=smoke"))
    assert proc.returncode == 0, f"smoke run failed in the container:\n{_tail(proc)}"

    # both the db and the artifacts are in the host folder, nothing anywhere else
    assert (store / "mlflow.db").is_file()
    npy = sorted(store.glob("mlruns/**/*.npy"))
    assert npy, f"no .npy artifacts under {store}/mlruns: {sorted(store.rglob('*'))[:50]}"

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="attributes.status = 'FINISHED'",
    )
    # `mlflow run` made its run in Default; the work ran in mnist-consistency_features and
    # the Default run stays as a pointer to it (tag lfxai.moved_to).
    top = [
        r
        for r in runs
        if "mlflow.parentRunId" not in r.data.tags and "lfxai.moved_to" not in r.data.tags
    ]
    assert len(top) == 1, [(r.info.run_id, r.info.status) for r in runs]
    assert client.get_experiment(top[0].info.experiment_id).name == "mnist-consistency_features"
    run = top[0]
    assert run.data.metrics, "the run has no metrics"
    assert run.info.artifact_uri.startswith(str(store)), run.info.artifact_uri

    def artifacts(path: str | None = None) -> list[str]:
        out = []
        for item in client.list_artifacts(run.info.run_id, path):
            out += artifacts(item.path) if item.is_dir else [item.path]
        return out

    files = artifacts()
    assert any(f.endswith(".npy") for f in files), files

    versions = client.search_model_versions()
    assert versions, "no registered model"
    run_ids = {r.info.run_id for r in runs}
    assert any(v.run_id in run_ids for v in versions), [(v.name, v.run_id) for v in versions]
    for v in versions:  # the registered model's files are in the host folder too
        source = v.source
        if source.startswith("models:/m-"):  # a logged model (MLflow 3): its own location
            source = client.get_logged_model(source.removeprefix("models:/")).artifact_location
        assert source.removeprefix("file://").startswith(str(store)), source


def test_unknown_experiment_fails_clearly(image: str, tmp_path: Path):
    proc = _run(tmp_path / "store", *_mlflow_run("name=nope", "profile=smoke"))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, _tail(proc)
    # The runner's own message (the script echoes the command, so "nope" alone proves nothing).
    assert "unknown experiment 'nope' for dataset 'mnist'" in out, _tail(proc)
    assert "valid choices: ['consistency_examples', 'consistency_features'" in out, _tail(proc)


def test_unknown_entry_point_fails_clearly(image: str, tmp_path: Path):
    proc = _run(tmp_path / "store", *_mlflow_run("name=consistency_features", entry_point="nope"))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, _tail(proc)
    # MLflow's message naming the entry points (not the echoed command line).
    assert "Could not find nope among entry points [" in out, _tail(proc)
    assert "'mnist'" in out.split("Could not find nope among entry points", 1)[1], _tail(proc)
