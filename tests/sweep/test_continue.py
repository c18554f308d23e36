"""The sweep's "continue the study" command: every setting given, the storage and the store."""

from __future__ import annotations

import shlex

from lfxai.cli.naming import Request
from lfxai.cli.sweep import _describe
from lfxai.sweep.settings import load_sweep_config


def continue_line(description: str) -> str:
    """The command between backticks on the description's "Continue the study" line."""
    (line,) = [x for x in description.splitlines() if x.startswith("Continue the study")]
    return line.split("`")[1]


def test_the_continue_command_repeats_every_setting_given_and_the_store(sweep_env):
    given = {
        "data_dir": "/data/lfxai data",  # a space: quoted
        "n_epochs": "3",
        "objective": "correlation",
        "n_jobs": "2",
        "beta_range": "0.5,8",
    }
    argv = ["--dataset", "mnist", "--n_trials", "4", "--profile", "smoke"]
    for key, value in given.items():
        argv += [f"--{key}", value]
    declared = {"dataset": "mnist", "n_trials": "4", "profile": "smoke"}
    request = Request("sweep", "sweep", "smoke", declared, argv)
    config = load_sweep_config("mnist", "smoke", {"objective": "correlation", "n_trials": "4"})
    storage = "postgresql+psycopg://optuna@db-host/optuna"
    store = "sqlite:////stores/x y/mlflow.db"
    description = _describe(request, config, given, {}, storage, 7, store)

    command = continue_line(description)
    words = shlex.split(command)
    assert words[0] == f"MLFLOW_TRACKING_URI={store}"  # an assignment the shell honours
    assert command.startswith("MLFLOW_TRACKING_URI='sqlite:////stores/x y/mlflow.db' mlflow")
    assert words[1:6] == ["mlflow", "run", ".", "-e", "sweep"]
    params = dict(w.split("=", 1) for w in words[7::2])
    assert words[6::2] == ["-P"] * len(params)
    assert params == {
        **declared,
        **given,
        "study_name": "mnist-correlation",  # the resolved name, though none was given
        "storage": storage,
    }
    assert "(add `--env-manager local` without conda)" in description
