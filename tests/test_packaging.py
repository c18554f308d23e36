"""The project files agree with each other: one dependency list, entry points, configs."""

from __future__ import annotations

import tomllib

import yaml

import lfxai.experiments  # noqa: F401
from lfxai.experiments.registry import datasets
from tests.helpers import REPO


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_conda_env_mirrors_pyproject_dependencies():
    conda = yaml.safe_load((REPO / "conda.yaml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert sorted(pip_section) == sorted(_pyproject()["project"]["dependencies"])
    assert "python=3.11" in conda["dependencies"]


def test_pinned_versions():
    deps = _pyproject()["project"]["dependencies"]
    for pin in ("torch==2.14.1", "torchvision==0.29.1", "mlflow==3.17.2"):
        assert pin in deps


def test_every_dataset_is_an_entry_point_declaring_only_real_values():
    """Only `name` and `profile` are declared: MLflow logs every declared parameter as a param,
    so a placeholder default (`profile`) would be logged on every run."""
    project = yaml.safe_load((REPO / "MLproject").read_text())
    assert project["conda_env"] == "conda.yaml" and "docker_env" not in project
    for dataset in datasets():
        entry = project["entry_points"][dataset]
        assert f"python -m entrypoints.{dataset}" in entry["command"]
        assert (REPO / "entrypoints" / f"{dataset}.py").is_file()
        assert (REPO / "configs" / f"{dataset}.yaml").is_file()
        assert set(entry["parameters"]) == {"name", "profile"}
        for name in entry["parameters"]:
            assert f"--{name} {{{name}}}" in entry["command"], name


def test_every_setting_passes_with_dash_p(tmp_path):
    """Undeclared `-P key=value` reach the entry point as `--key value` (MLflow appends them)."""
    from lfxai.tracking.compat import load_mlproject

    entry = load_mlproject(REPO).get_entry_point("mnist")
    params = {"name": "roar_test", "seed": "3", "feature_methods": "Saliency,Random"}
    command = entry.compute_command(params, str(tmp_path))
    assert command.startswith("python -m entrypoints.mnist --name roar_test --profile quick")
    assert "--seed 3" in command and "--feature_methods Saliency,Random" in command
