"""ROAR: exact masks, bad input rejected before training, retraining from the same weights."""

from __future__ import annotations

import os
import re
import signal
import time
from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest
import torch
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lfxai.cli.experiment import main
from lfxai.cli.launch import EXIT_BAD_INPUT
from lfxai.concurrency import CpuWorkers
from lfxai.data.masking import apply_mask, top_k_mask
from lfxai.experiments import roar_retraining as retraining
from lfxai.experiments import roar_test as roar
from lfxai.tracking import ERROR_TAG, RESUMED_INTO_TAG, STOPPED_TAG, Tracker
from tests.experiments.runs import top_runs
from tests.helpers import EXPERIMENT, spy, spy_named
from tests.synthetic import SyntheticDigits, digits, use_synthetic


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
    monkeypatch.setenv(retraining.FAIL_AFTER_ENV, "2")
    hook = retraining.InterruptionHook.from_env()
    hook.check()
    hook.check()
    with pytest.raises(RuntimeError, match="after 2 retrainings"):
        hook.check()
    monkeypatch.delenv(retraining.FAIL_AFTER_ENV)
    never = retraining.InterruptionHook.from_env()
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
    table.loc[table.pct_removed == 10, "pct_removed"] = 1  # 1 % is a removal too, 0 % is not
    assert roar._summary(table) == pytest.approx(summary)


def _run(status: str, loss: float | None = None, **tags: str) -> SimpleNamespace:
    """A nested run as :meth:`Tracker.child_runs` lists it (what _previous_retrainings reads)."""
    tags = {retraining.TAG + key: value for key, value in tags.items()}
    metrics = {} if loss is None else {"roar/test_loss": loss}
    info = SimpleNamespace(status=status, run_id=f"{status}-{tags}")
    return SimpleNamespace(info=info, data=SimpleNamespace(tags=tags, metrics=metrics))


def test_a_resume_skips_finished_retrainings_with_a_loss_and_reopens_the_others() -> None:
    runs = [
        _run("FINISHED", 0.5, method="Random"),  # no k: not a retraining (e.g. someone's run)
        _run("FINISHED", 0.1, k="10"),  # no method: neither
        _run("FINISHED", 0.2, method="IG", k="10"),
        _run("FAILED", 0.3, method="IG", k="50"),  # a loss, but the run did not finish
        _run("FINISHED", None, method="IG", k="100"),  # finished without its loss
        _run("KILLED", None, method="Random", k="10"),
    ]
    done, unfinished = retraining.previous_retrainings(SimpleNamespace(child_runs=lambda: runs))
    assert done == {("IG", "10"): (runs[2].info.run_id, 0.2)}
    assert unfinished == {
        ("IG", "50"): runs[3].info.run_id,
        ("IG", "100"): runs[4].info.run_id,
        ("Random", "10"): runs[5].info.run_id,
    }


BAD_INPUT = [
    (["--feature_methods", "GradientShap,Shap"], r"'Shap'.*valid choices.*IntegratedGradients"),
    (["--feature_methods", ","], r"feature_methods must not be empty.*GradientShap"),
    (["--remove_percentages", "10,0"], r"remove_percentages entry 0.0 is outside \(0, 100\]"),
    (["--remove_percentages", "50,101"], r"remove_percentages entry 101.0 is outside"),
    (["--remove_percentages", ","], r"remove_percentages must not be empty"),
    (["--remove_percentages", "10,10.2"], r"entry 10.2 is not a whole percent.*MLflow step"),
    (["--remove_percentages", "0.4,50"], r"entry 0.4 is not a whole percent"),
    (["--remove_percentages", "10,50,10"], r"remove_percentages lists \[10.0\] more than once"),
    (["--feature_methods", "Random,Random"], r"feature_methods lists \['Random'\] more than once"),
    (
        ["--register_retrained", "true", "--log_retrained_models", "false"],
        r": register_retrained=true needs log_retrained_models=true$",
    ),
    (["--attribution_batch_size", "0"], r": attribution_batch_size must be positive, got 0$"),
    (["--retraining_workers", "0"], r": retraining_workers must be positive, got 0$"),
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


def test_every_retraining_starts_from_the_logged_weights_on_masked_images(
    mlflow_store, monkeypatch, tmp_path
) -> None:
    data_dir = use_synthetic(monkeypatch, tmp_path)
    seen: list[tuple[str, dict[str, torch.Tensor], torch.Tensor]] = []
    original_fit = retraining.tracked_fit

    def recorded(model, training, device, tracker, train, test, prefix="fit", **kwargs):
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        seen.append((prefix, state, train.x.clone()))
        return original_fit(model, training, device, tracker, train, test, prefix=prefix, **kwargs)

    monkeypatch.setattr(retraining, "tracked_fit", recorded)
    # A grey baseline, so that a removed pixel's value is seen (MNIST's is 0, as no pixel).
    grey = torch.full((1, 1, 28, 28), 0.25)
    monkeypatch.setattr(SyntheticDigits, "baseline", lambda self, train: grey)
    argv = ["--name", "roar_test", "--profile", "smoke", "--data_dir", str(data_dir)]
    argv += ["--n_train", "40", "--n_test", "20", "--feature_methods", "IntegratedGradients"]
    argv += ["--remove_percentages", "10,70", "--batch_size", "20"]
    assert main("synthetic", argv) == 0
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    tracker = Tracker(parent.info.run_id)
    initial = tracker.load_state_dict(roar.INITIAL_WEIGHTS)
    scores = torch.from_numpy(tracker.load_array("attributions/IntegratedGradients.npy"))
    assert [prefix for prefix, _, _ in seen] == ["fit", "fit", "fit"]
    base_images = seen[0][2]
    assert torch.equal(base_images, digits(200, seed=1).x[:40])
    assert scores.shape == base_images.shape == (40, 1, 28, 28)
    for _, state, _ in seen:
        assert state.keys() == initial.keys()
        assert all(torch.equal(state[k], initial[k]) for k in initial)
    expected = {
        pct: apply_mask(base_images, top_k_mask(scores, pct / 100), grey) for pct in (10, 70)
    }
    # Two retrainings run at once: their fits may start in either order.
    trained = {
        pct: images
        for _, _, images in seen[1:]
        for pct in expected
        if torch.equal(images, expected[pct])
    }
    assert sorted(trained) == [10, 70]
    for pct, images in trained.items():
        changed = (images != base_images).flatten(1).sum(1)
        assert int(changed.max()) <= round(pct / 100 * 784)  # never more than k pixels


def test_a_retraining_on_identical_data_reuses_the_earlier_one(
    mlflow_store, monkeypatch, tmp_path
) -> None:
    """k = 100 % masks every pixel whatever the method: Saliency's nested run reuses the
    model and loss of Random's (trained first, beside the base model), tagged, instead of
    training again."""
    data_dir = use_synthetic(monkeypatch, tmp_path)
    fitted: list[torch.Tensor] = []
    original_fit = retraining.tracked_fit

    def recorded(model, training, device, tracker, train, test, prefix="fit", **kwargs):
        fitted.append(train.x.clone())
        return original_fit(model, training, device, tracker, train, test, prefix=prefix, **kwargs)

    monkeypatch.setattr(retraining, "tracked_fit", recorded)
    argv = ["--name", "roar_test", "--profile", "smoke", "--data_dir", str(data_dir)]
    argv += ["--n_train", "40", "--n_test", "20", "--batch_size", "20"]
    argv += ["--feature_methods", "Saliency,Random", "--remove_percentages", "50,100"]
    argv += ["--log_retrained_models", "true", "--register_retrained", "true"]
    argv += ["--register_model", "false"]
    assert main("synthetic", argv) == 0
    # base, Random 50 and 100, Saliency 50: Saliency 100 trains on the same all-zero images.
    assert len(fitted) == 4
    assert all(not torch.equal(a, b) for i, a in enumerate(fitted) for b in fitted[i + 1 :])
    client = MlflowClient()
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    nested = {
        (r.data.tags[retraining.TAG + "method"], r.data.tags[retraining.TAG + "k"]): r
        for r in runs
        if retraining.TAG + "method" in r.data.tags
    }
    assert len(nested) == 4 and all(r.info.status == "FINISHED" for r in nested.values())
    reused, source = nested[("Saliency", "100")], nested[("Random", "100")]
    same = retraining.TAG + "same_training_data_as"
    assert reused.data.tags[same] == source.info.run_id
    assert [r for r in nested.values() if same in r.data.tags] == [reused]
    loss = "roar/test_loss"
    assert reused.data.metrics[loss] == source.data.metrics[loss]
    assert not any(m.startswith("fit/") for m in reused.data.metrics)  # nothing trained
    assert nested[("Saliency", "50")].data.metrics[loss] != source.data.metrics[loss]
    models = client.search_logged_models(
        experiment_ids=[reused.info.experiment_id],
        filter_string=f"source_run_id = '{reused.info.run_id}'",
    )
    assert len(models) == 1  # its encoder is logged like every other retraining's
    # register_retrained: each retraining's encoder under its data set, method and k.
    registered = {
        v.name: v.run_id
        for m in client.search_registered_models()
        for v in client.search_model_versions(f"name = '{m.name}'")
    }
    assert registered == {
        f"lfxai-synthetic-roar-test-ae-{method.lower()}-{k}": run.info.run_id
        for (method, k), run in nested.items()
    }
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    history = client.get_metric_history(parent.info.run_id, "roar/test_loss/Saliency")
    assert {m.step: m.value for m in history}[100] == source.data.metrics[loss]


def _kill_at_retraining(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """SIGTERM this process as its (n+1)-th retraining starts (inside its nested run)."""

    def check(self: retraining.InterruptionHook) -> None:
        if self.count >= n:
            os.kill(os.getpid(), signal.SIGTERM)
        self.count += 1

    monkeypatch.setattr(retraining.InterruptionHook, "check", check)


def test_a_resume_killed_between_retrainings_keeps_every_run_in_place(
    mlflow_store, monkeypatch, tmp_path
) -> None:
    """Killed, resumed and killed again, then resumed to the end, each time under a run of
    its own made by `mlflow run` (MLFLOW_RUN_ID): every retraining is a child of the one
    parent, the launchers' runs end with the parent's status, no stale tag stays."""
    data_dir = use_synthetic(monkeypatch, tmp_path)
    client = MlflowClient()
    experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
    saved = spy(monkeypatch, Tracker, "log_state_dict")  # (tracker, model, path) per call
    fitted = spy_named(monkeypatch, retraining, "tracked_fit")
    argv = ["--name", "roar_test", "--profile", "smoke", "--data_dir", str(data_dir)]
    argv += ["--n_train", "40", "--n_test", "20", "--batch_size", "20"]
    argv += ["--feature_methods", "Random", "--remove_percentages", "10,50,100"]
    # One at a time, so that each kill finds exactly one retraining running.
    argv += ["--register_model", "false", "--retraining_workers", "1"]

    def launch(kill_at: int | None, resume: str = "none") -> tuple[int, str]:
        launcher = client.create_run(experiment_id).info.run_id
        monkeypatch.setenv("MLFLOW_RUN_ID", launcher)
        if kill_at is None:
            monkeypatch.setattr(retraining.InterruptionHook, "check", lambda self: None)
        else:
            _kill_at_retraining(monkeypatch, kill_at)
        return main("synthetic", [*argv, "--resume_run_id", resume]), launcher

    def children(run_id: str) -> dict[str, tuple[str, dict]]:
        runs = client.search_runs(
            [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
        )
        return {r.data.tags[retraining.TAG + "k"]: (r.info.status, r.data.tags) for r in runs}

    code, parent = launch(kill_at=1)  # not a resume: the launcher's run is the parent
    assert code == 128 + signal.SIGTERM
    run = client.get_run(parent)
    assert run.info.status == "KILLED" and run.data.tags[STOPPED_TAG].startswith("SIGTERM")
    assert {k: s for k, (s, _) in children(parent).items()} == {"10": "FINISHED", "50": "KILLED"}

    code, second = launch(kill_at=1, resume=parent)  # 50 reopened, killed as 100 starts
    assert code == 128 + signal.SIGTERM
    statuses = {k: s for k, (s, _) in children(parent).items()}
    assert statuses == {"10": "FINISHED", "50": "FINISHED", "100": "KILLED"}
    assert client.get_run(parent).info.status == "KILLED"
    assert client.get_run(second).info.status == "KILLED"  # ends with the parent's status
    assert client.get_run(second).data.tags[RESUMED_INTO_TAG] == parent

    code, third = launch(kill_at=None, resume=parent)
    assert code == 0
    run = client.get_run(parent)
    assert run.info.status == "FINISHED"
    assert not {STOPPED_TAG, ERROR_TAG} & set(run.data.tags)  # no stale outcome
    final = children(parent)
    assert {k: s for k, (s, _) in final.items()} == {k: "FINISHED" for k in ("10", "50", "100")}
    assert all(STOPPED_TAG not in tags for _, tags in final.values())
    assert client.get_run(third).info.status == "FINISHED"
    for launcher in (second, third):  # no retraining was logged outside the parent
        assert children(launcher) == {}
    everything = client.search_runs([experiment_id])
    assert len(everything) == 3 + 3  # three launchers (the first is the parent), three children
    history = client.get_metric_history(parent, "roar/test_loss/Random")
    assert sorted(m.step for m in history) == [0, 10, 50, 100]
    # A resume reloads the initial weights and the base model: each is logged once, the
    # base trained once (first launch), then one fit per retraining: 10, 50, 100.
    assert [call[2] for call in saved] == [roar.INITIAL_WEIGHTS, roar.BASE_WEIGHTS]
    nested = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )
    ids = {r.data.tags[retraining.TAG + "k"]: r.info.run_id for r in nested}
    assert [call["tracker"].run_id for call in fitted] == [parent, ids["10"], ids["50"], ids["100"]]


def _nested_runs(client: MlflowClient, parent: str) -> dict[str, Run]:
    """``parent``'s retrainings by ``<method>-<k>``."""
    experiment_id = client.get_run(parent).info.experiment_id
    runs = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    tag = retraining.TAG
    return {f"{r.data.tags[tag + 'method']}-{r.data.tags[tag + 'k']}": r for r in runs}


def test_retrainings_at_once_are_the_computation_of_one_after_the_other(
    mlflow_store, monkeypatch, tmp_path
) -> None:
    """One torch thread per retraining either way: two at a time changes nothing but time,
    also with the encoders exported while other models train (an export beside a training
    changes its rounding, so exports wait for the others' epochs to end)."""
    data_dir = use_synthetic(monkeypatch, tmp_path)
    workers = spy_named(monkeypatch, retraining, "CpuWorkers")
    argv = ["--name", "roar_test", "--profile", "smoke", "--data_dir", str(data_dir)]
    argv += ["--n_train", "40", "--n_test", "20", "--batch_size", "20", "--n_epochs", "2"]
    argv += ["--feature_methods", "Saliency,Random", "--remove_percentages", "10,50"]
    argv += ["--register_model", "false", "--log_retrained_models", "true"]
    client, parents = MlflowClient(), []
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # 1 // 2 workers: each runs on one thread too
    try:
        for n in (1, 2):
            assert main("synthetic", [*argv, "--retraining_workers", str(n)]) == 0
            (parent,) = [r for r in top_runs("roar_test") if r.info.run_id not in parents]
            parents.append(parent.info.run_id)
    finally:
        torch.set_num_threads(previous)
    assert [call["workers"] for call in workers] == [1, 2]
    one, two = (_nested_runs(client, p) for p in parents)
    assert sorted(one) == sorted(two) == ["Random-10", "Random-50", "Saliency-10", "Saliency-50"]
    for key, run in one.items():
        assert run.info.status == two[key].info.status == "FINISHED"
        metrics = [
            {k: v for k, v in r.data.metrics.items() if not k.startswith("time/")}
            for r in (run, two[key])
        ]
        assert metrics[0] == metrics[1] and "roar/test_loss" in metrics[0], key  # bit for bit
        history = [
            [m.value for m in client.get_metric_history(r.info.run_id, "fit/train_loss")]
            for r in (run, two[key])
        ]
        assert history[0] == history[1] and len(history[0]) == 2
    for parent in parents:
        metrics = client.get_run(parent).data.metrics
        wall = metrics["time/retraining_wall_seconds"]
        assert 0 < wall < metrics["time/total_seconds"]
        assert all(metrics[f"time/retraining_seconds/{m}"] > 0 for m in ("Saliency", "Random"))


def test_a_stop_while_retrainings_run_at_once_kills_them_and_a_resume_finishes(
    mlflow_store, monkeypatch, tmp_path
) -> None:
    data_dir = use_synthetic(monkeypatch, tmp_path)
    created: list[CpuWorkers] = []
    real = retraining.CpuWorkers
    monkeypatch.setattr(retraining, "CpuWorkers", lambda n: created.append(real(n)) or created[-1])

    def check(self: retraining.InterruptionHook) -> None:
        if self.count >= 1:  # the second retraining to start stops the process ...
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # ... and ends KILLED once the stop is seen
                created[-1].stop_point()
                time.sleep(0.01)
            raise AssertionError("the stop never reached the retraining")
        self.count += 1

    monkeypatch.setattr(retraining.InterruptionHook, "check", check)
    argv = ["--name", "roar_test", "--profile", "smoke", "--data_dir", str(data_dir)]
    argv += ["--n_train", "40", "--n_test", "20", "--batch_size", "20"]
    argv += ["--feature_methods", "Random", "--remove_percentages", "10,50,100"]
    argv += ["--register_model", "false", "--retraining_workers", "2"]
    assert main("synthetic", argv) == 128 + signal.SIGTERM
    (parent,) = top_runs("roar_test")
    client, parent_id = MlflowClient(), parent.info.run_id
    assert client.get_run(parent_id).info.status == "KILLED"
    stopped = _nested_runs(client, parent_id)
    assert stopped["Random-50"].info.status == "KILLED"
    # The first one was killed at its epoch's end or had finished; the third, if it was
    # drawn before the stop, was killed: none is left RUNNING or FAILED.
    assert {r.info.status for r in stopped.values()} <= {"KILLED", "FINISHED"}
    for run in stopped.values():
        if run.info.status == "KILLED":
            assert run.data.tags[STOPPED_TAG].startswith("SIGTERM received")

    monkeypatch.setattr(retraining.InterruptionHook, "check", lambda self: None)
    assert main("synthetic", [*argv, "--resume_run_id", parent_id]) == 0
    resumed = _nested_runs(client, parent_id)
    assert sorted(resumed) == ["Random-10", "Random-100", "Random-50"]
    assert all(r.info.status == "FINISHED" for r in resumed.values())
    assert {k: r.info.run_id for k, r in stopped.items()}.items() <= {
        k: r.info.run_id for k, r in resumed.items()
    }.items()  # reopened, not duplicated
    history = client.get_metric_history(parent_id, "roar/test_loss/Random")
    assert sorted(m.step for m in history) == [0, 10, 50, 100]
