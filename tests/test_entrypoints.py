"""The entry-point package sets torch's OpenMP wait policy before torch is loaded."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = (
    "import sys, os, entrypoints; print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))"
)


def _probe(policy: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("policy", "expected"), [(None, "False PASSIVE"), ("ACTIVE", "False ACTIVE")]
)
def test_wait_policy_is_passive_unless_chosen_and_set_before_torch(policy, expected):
    # "False": importing the package must not load torch, or libgomp would read the
    # environment before the policy is set and ignore it.
    assert _probe(policy) == expected


def _project_modules() -> list[str]:
    """The `python -m <module>` of every entry point MLproject declares."""
    text = (ROOT / "MLproject").read_text()
    return sorted(set(re.findall(r"python -m (entrypoints\.\w+)", text)))


def test_mlproject_declares_every_entry_point_module():
    modules = {f"entrypoints.{p.stem}" for p in (ROOT / "entrypoints").glob("*.py")}
    assert set(_project_modules()) == modules - {"entrypoints.__init__"}


@pytest.mark.parametrize("module", _project_modules())
def test_every_entry_point_imports_and_answers_help(module):
    # `--help` imports the module and builds its parser without training anything: a
    # renamed or moved import fails here instead of in a ten-minute end-to-end test.
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()
