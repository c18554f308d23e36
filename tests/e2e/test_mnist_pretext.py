"""`mlflow run . -e mnist -P name=pretext -P profile=smoke`, then read the store back.

One run (five pretext tasks, one nested run each): the parent's correlation matrices,
tables and figures, the nested runs' explanations, the five registered encoders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lfxai.experiments.pretext import EXPLANATIONS
from lfxai.experiments.pretext_models import TITLES
from lfxai.metrics.correlation import CORRELATIONS
from tests.helpers import make_store, run_experiment

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.data]

TASKS = list(TITLES)
MODELS = {
    "reconstruction": "lfxai-mnist-reconstruction-ae-d4",
    "denoising": "lfxai-mnist-denoising-ae-d4",
    "inpainting": "lfxai-mnist-inpainting-ae-d4",
    "classification": "lfxai-mnist-classification-d4",
    "scae": "lfxai-mnist-scae-d3456",
}
N_TEST, N_TRAIN_EXPLAINED = 50, 50  # the smoke profile's


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir):
    store = make_store(tmp_path_factory.mktemp("store"))
    params = {"name": "pretext", "profile": "smoke", "data_dir": str(data_dir)}
    return run_experiment("mnist", params, store)


def _children(client, parent) -> dict[str, object]:
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    return {r.data.params["task"]: r for r in runs}


def test_parent_has_symmetric_correlation_matrices_tables_and_figures(finished_run) -> None:
    client, parent = finished_run
    run_id = parent.info.run_id
    table = pd.read_csv(client.download_artifacts(run_id, "pretext_correlations.csv"))
    assert len(table) == len(EXPLANATIONS) * len(CORRELATIONS) * len(TASKS) ** 2
    for (explanation, correlation), part in table.groupby(["explanation", "correlation"]):
        mean = part.pivot(index="task_a", columns="task_b", values="mean").loc[TASKS, TASKS]
        np.testing.assert_allclose(mean.to_numpy(), mean.to_numpy().T, atol=1e-9)
        np.testing.assert_allclose(np.diag(mean.to_numpy()), 1.0, atol=1e-9)
        assert np.all(np.abs(mean.to_numpy()) <= 1.0)
        runs = np.load(
            client.download_artifacts(run_id, f"correlations/{explanation}_{correlation}.npy")
        )
        assert runs.shape == (1, len(TASKS), len(TASKS))
        pair = f"{explanation}/{correlation}/reconstruction-denoising"
        assert parent.data.metrics[f"{pair}/mean"] == pytest.approx(runs[0, 0, 1])
        assert parent.data.metrics[f"{pair}/std"] == 0.0  # one run
        key = f"{explanation}/{correlation}/off_diagonal_mean"
        off = runs[0][~np.eye(len(TASKS), dtype=bool)].mean()
        assert parent.data.metrics[key] == pytest.approx(off)
    names = {a.path for a in client.list_artifacts(run_id)}
    for figure in ("pretext_correlations", "pretext_saliency", "pretext_top_examples"):
        assert {f"{figure}.png", f"{figure}.pdf"} <= names
    assert {"pretext_correlations.tex", "pretext_models.csv", "claims.md"} <= names
    latex = Path(client.download_artifacts(run_id, "pretext_correlations.tex")).read_text()
    assert latex.count("\\begin{tabular}") == 4 and "SCAE" in latex
    claims = [k for k in parent.data.metrics if k.startswith("claims/holds/")]
    assert len(claims) == 4 and "claims/all_hold" in parent.data.metrics
    assert parent.data.params["config.example_attr_method"] == "DKNN"


def test_each_task_is_a_nested_run_with_its_registered_encoder(finished_run) -> None:
    client, parent = finished_run
    children = _children(client, parent)
    assert sorted(children) == sorted(TASKS)
    used = pd.read_csv(client.download_artifacts(parent.info.run_id, "pretext_models.csv"))
    assert list(used.task) == TASKS
    for task, child in children.items():
        assert child.info.status == "FINISHED" and child.data.params["source"] == "trained"
        (version,) = client.search_model_versions(f"name = '{MODELS[task]}'")
        assert version.run_id == child.info.run_id
        # The profile's and pretext's aliases point at it (search results lack aliases);
        # it has the tags and description every experiment's versions have.
        for alias in ("smoke", "pretext-smoke"):
            assert client.get_model_version_by_alias(MODELS[task], alias).version == version.version
        assert version.tags["lfxai.experiment"] == "pretext"
        assert version.tags["lfxai.pretext"] == task
        assert {"lfxai.run_name", "test_loss"} <= set(version.tags)
        assert version.tags["lfxai.data_digest"] == parent.data.tags["lfxai.data_digest"]
        assert version.description.startswith("pretext (smoke profile), run ")
        uri = f"models:/{MODELS[task]}/{version.version}"
        assert child.data.tags["lfxai.encoder_uri"] == uri
        assert used.set_index("task").model_uri[task] == uri
        saliency = np.load(
            client.download_artifacts(child.info.run_id, "attributions/Saliency.npy")
        )
        assert saliency.shape == (N_TEST, 1, 28, 28) and np.all(saliency >= 0)
        path = "example_importance/DKNN.npy"
        importance = np.load(client.download_artifacts(child.info.run_id, path))
        assert importance.shape == (N_TEST, N_TRAIN_EXPLAINED)
        assert len(client.get_metric_history(child.info.run_id, "fit/train_loss")) == 1
    scae = children["scae"].data.params
    assert scae["model"] == "mnist_scae"
    assert sorted(m.name for m in client.search_registered_models()) == sorted(MODELS.values())
