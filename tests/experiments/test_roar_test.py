"""ROAR: exact masks, bad input rejected before training, retraining from the same weights."""

from __future__ import annotations

import re

import mlflow
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from lfxai.data.masking import apply_mask, top_k_mask
from lfxai.data.mnist import mnist_split
from lfxai.experiments import roar_test as roar
from lfxai.experiments.runner import EXIT_BAD_INPUT, main
from lfxai.tracking import Tracker


def test_masks_remove_exactly_the_top_k_pixels_of_each_image() -> None:
    # 3 images of 4x4 pixels; each image ranks its pixels by a different permutation.
    n, side = 3, 4
    generator = torch.Generator().manual_seed(0)
    ranks = torch.stack([torch.randperm(side * side, generator=generator) for _ in range(n)])
    scores = ranks.float().view(n, 1, side, side)  # higher rank = more important
    images = torch.rand(n, 1, side, side, generator=generator) + 0.5  # no pixel is 0 yet
    for pct in (10, 25, 50, 70, 100):
        k = round(pct / 100 * side * side)
        mask = top_k_mask(scores, pct / 100)
        masked = apply_mask(images, mask, 0.0)
        assert mask.shape == images.shape and mask.dtype == torch.bool
        for i in range(n):
            expected = set(torch.argsort(ranks[i], descending=True)[:k].tolist())
            removed = set(torch.nonzero(masked[i].flatten() == 0).flatten().tolist())
            assert removed == expected, (pct, i)  # positions, hence also the count k
            kept = ~mask[i]
            assert torch.equal(masked[i][kept], images[i][kept])  # the rest is untouched
    assert torch.all(images > 0)  # apply_mask returned new tensors


def test_interruption_hook_counts_retrainings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(roar.FAIL_AFTER_ENV, "2")
    hook = roar._InterruptionHook.from_env()
    hook.check()
    hook.check()
    with pytest.raises(RuntimeError, match="after 2 retrainings"):
        hook.check()
    monkeypatch.delenv(roar.FAIL_AFTER_ENV)
    never = roar._InterruptionHook.from_env()
    for _ in range(10):
        never.check()


def test_summary_compares_each_method_with_random() -> None:
    table = pd.DataFrame(
        {
            "method": ["IG", "IG", "IG", "Random", "Random", "Random"],
            "pct_removed": [0, 10, 50] * 2,
            "test_loss": [0.1, 0.3, 0.5, 0.1, 0.2, 0.2],
        }
    )
    summary = roar._summary(table)
    assert summary["roar/test_loss_mean/IG"] == pytest.approx(0.4)
    assert summary["roar/test_loss_mean/Random"] == pytest.approx(0.2)
    assert summary["roar/excess_over_random/IG"] == pytest.approx(0.2)


BAD_INPUT = [
    (["--feature_methods", "GradientShap,Shap"], r"'Shap'.*valid choices.*IntegratedGradients"),
    (["--feature_methods", ","], r"feature_methods must not be empty.*GradientShap"),
    (["--remove_percentages", "10,0"], r"remove_percentages entry 0.0 is outside \(0, 100\]"),
    (["--remove_percentages", "50,101"], r"remove_percentages entry 101.0 is outside"),
    (["--remove_percentages", ","], r"remove_percentages must not be empty"),
    (["--remove_percentages", "10,10.2"], r"distinct after rounding"),
    (
        ["--register_retrained", "true", "--log_retrained_models", "false"],
        r"needs log_retrained_models=true",
    ),
]


def test_bad_input_fails_before_any_training(mlflow_store, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a SQLite store's artifacts go to ./mlruns
    # One store for all cases: creating a SQLite store costs seconds.
    seen: set[str] = set()
    for override, message in BAD_INPUT:
        argv = ["--name", "roar_test", "--profile", "smoke", *override]
        assert main("mnist", argv) == EXIT_BAD_INPUT, override
        err = capsys.readouterr().err
        assert re.search(message, err), (override, err)
        runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
        # The new run, by id: start times of consecutive runs can tie at the millisecond.
        (run,) = [r for r in runs if r.info.run_id not in seen]
        seen.add(run.info.run_id)
        assert run.info.status == "FAILED", override
        assert re.search(message, run.data.tags["lfxai.error"]), override
        assert MlflowClient().list_artifacts(run.info.run_id) == [], override  # nothing trained
        assert "lfxai.roar_test.initial_weights" not in run.data.tags


@pytest.mark.slow
def test_every_retraining_starts_from_the_logged_weights_on_masked_images(
    mlflow_store, data_dir, monkeypatch, tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)  # a SQLite store's artifacts go to ./mlruns
    seen: list[tuple[str, dict[str, torch.Tensor], torch.Tensor]] = []
    original_fit = roar.tracked_fit

    def spy(model, config, tracker, train, test, prefix="fit", **kwargs):
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        seen.append((prefix, state, train.x.clone()))
        return original_fit(model, config, tracker, train, test, prefix=prefix, **kwargs)

    monkeypatch.setattr(roar, "tracked_fit", spy)
    argv = ["--name", "roar_test", "--profile", "smoke", "--data_dir", str(data_dir)]
    argv += ["--n_train", "40", "--n_test", "20", "--feature_methods", "IntegratedGradients"]
    argv += ["--remove_percentages", "10,70", "--batch_size", "20"]
    assert main("mnist", argv) == 0
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    tracker = Tracker(parent.info.run_id)
    initial = tracker.load_state_dict(roar.INITIAL_WEIGHTS)
    scores = torch.from_numpy(tracker.load_array("attributions/IntegratedGradients.npy"))
    assert [prefix for prefix, _, _ in seen] == ["base", "fit", "fit"]
    base_images = seen[0][2]
    assert torch.equal(base_images, mnist_split(data_dir / "mnist", train=True, size=40).x)
    assert scores.shape == base_images.shape == (40, 1, 28, 28)
    for _, state, _ in seen:
        assert state.keys() == initial.keys()
        assert all(torch.equal(state[k], initial[k]) for k in initial)
    for pct, (_, _, images) in zip((10, 70), seen[1:], strict=True):
        expected = apply_mask(base_images, top_k_mask(scores, pct / 100), 0.0)
        assert torch.equal(images, expected)
        changed = (images != base_images).flatten(1).sum(1)
        assert int(changed.max()) <= round(pct / 100 * 784)  # never more than k pixels
