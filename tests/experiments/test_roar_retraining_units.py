"""ROAR's retrainings on a recording tracker: names, seeds of weights, logged keys, reuse.

No store and no real training: the fit is a stand-in that records the model's weights and the
training set it was handed, so each rule (every retraining starts from the initial weights, a
duplicate training set is not trained twice, each logged name) is pinned in milliseconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

import lfxai.experiments  # noqa: F401  (fills the registry)
from lfxai.config import ConfigError, build_config, load_profile
from lfxai.data.splits import Split
from lfxai.experiments import roar_retraining as retraining
from lfxai.experiments.registry import get_experiment
from lfxai.experiments.roar_retraining import Outcome, Retrainer, Task
from lfxai.plugins import Splits
from lfxai.training import FitResult

TAG = "lfxai.roar_test."


# --------------------------------------------------------------------------- settings


def _config(**overrides: str):
    schema = get_experiment("mnist", "roar_test").schema
    values = load_profile("mnist", "roar_test", "smoke")
    return build_config(schema, values, {"device": "cpu", **overrides})


def test_retraining_settings_accept_logging_without_registering():
    config = _config()
    dataclasses.replace(config, log_retrained_models=True, register_retrained=True).validate()
    dataclasses.replace(config, log_retrained_models=True, register_retrained=False).validate()
    dataclasses.replace(config, log_retrained_models=False, register_retrained=False).validate()
    dataclasses.replace(config, retraining_workers=1).validate()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"retraining_workers": 0}, r"^retraining_workers must be positive, got 0$"),
        (
            {"register_retrained": True, "log_retrained_models": False},
            r"^register_retrained=true needs log_retrained_models=true$",
        ),
        ({"n_train": 0}, r"^n_train must be positive, got 0$"),  # the autoencoder's checks
    ],
)
def test_bad_retraining_settings_name_the_value(changes, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(_config(), **changes).validate()


# --------------------------------------------------------------------------- names


def test_percentages_read_as_whole_numbers_in_names():
    assert retraining.k_label(10.0) == "10"
    assert retraining.k_label(100) == "100"
    assert retraining.k_label(12.5) == "12.5"


def test_a_digest_is_the_sha256_of_the_tensors_bytes_in_row_major_order():
    x = torch.arange(6, dtype=torch.float32).view(2, 3)
    expected = hashlib.sha256(x.numpy().tobytes()).hexdigest()
    assert retraining._digest(x) == expected  # noqa: SLF001
    assert retraining._digest(x.t().contiguous().t()) == expected  # noqa: SLF001
    assert retraining._digest(x.t()) != expected  # noqa: SLF001  (other values in order)
    assert retraining._digest(x + 1) != expected  # noqa: SLF001


def test_a_task_reopens_no_run_unless_given_one():
    assert Task("IG", 10.0).run_id is None
    assert Task("IG", 10.0, "abc").run_id == "abc"
    assert Outcome("r", 0.5, 2.0)._asdict() == {"run_id": "r", "loss": 0.5, "seconds": 2.0}


# --------------------------------------------------------------------------- interruption


def test_the_interruption_hook_reads_a_padded_count_and_ignores_blanks(monkeypatch):
    monkeypatch.setenv(retraining.FAIL_AFTER_ENV, " 1 ")
    assert retraining.FAIL_AFTER_ENV == "LFXAI_FAIL_AFTER_RETRAININGS"
    hook = retraining.InterruptionHook.from_env()
    assert hook.limit == 1 and hook.count == 0
    hook.check()
    assert hook.count == 1
    with pytest.raises(RuntimeError, match=r"^simulated interruption after 1 retrainings$"):
        hook.check()
    assert hook.count == 1  # a refused retraining is not counted
    monkeypatch.setenv(retraining.FAIL_AFTER_ENV, "   ")
    assert retraining.InterruptionHook.from_env().limit is None
    monkeypatch.delenv(retraining.FAIL_AFTER_ENV)
    assert retraining.InterruptionHook.from_env().limit is None


def test_a_limit_of_zero_refuses_the_first_retraining():
    with pytest.raises(RuntimeError, match=r"^simulated interruption after 0 retrainings$"):
        retraining.InterruptionHook(0).check()
    hook = retraining.InterruptionHook(None)
    for _ in range(3):
        hook.check()
    assert hook.count == 3


# --------------------------------------------------------------------------- resume


def _child(status: str, tags: dict[str, str], metrics: dict[str, Any], run_id: str):
    info = SimpleNamespace(status=status, run_id=run_id)
    return SimpleNamespace(info=info, data=SimpleNamespace(tags=tags, metrics=metrics))


def test_a_finished_run_with_a_zero_loss_is_done_and_a_running_one_is_reopened():
    runs = [
        _child("FINISHED", {TAG + "method": "IG", TAG + "k": "10"}, {"roar/test_loss": 0}, "a"),
        _child("RUNNING", {TAG + "method": "IG", TAG + "k": "50"}, {"roar/test_loss": 1}, "b"),
        _child("FINISHED", {"other.method": "IG", TAG + "k": "70"}, {"roar/test_loss": 1}, "c"),
        _child("FINISHED", {TAG + "method": "IG", TAG + "k": "90"}, {"test_loss": 1.0}, "d"),
    ]
    done, unfinished = retraining.previous_retrainings(SimpleNamespace(child_runs=lambda: runs))
    assert done == {("IG", "10"): ("a", 0.0)}
    assert type(done["IG", "10"][1]) is float
    assert unfinished == {("IG", "50"): "b", ("IG", "90"): "d"}


# --------------------------------------------------------------------------- the retrainer


class TinyModel(nn.Module):
    """A model whose weights a fake fit sets from its training set."""

    def __init__(self, name: str, fill: float) -> None:
        super().__init__()
        self.name = name
        self.linear = nn.Linear(2, 1)
        with torch.no_grad():
            self.linear.weight.fill_(fill)
            self.linear.bias.fill_(fill)


@dataclass
class Models:
    """The model factory: numbered models, each with weights unlike the initial ones."""

    dataset: Any
    made: list[TinyModel] = field(default_factory=list)

    def __call__(self, name: str) -> TinyModel:
        self.made.append(TinyModel(name, fill=100.0 + len(self.made)))
        return self.made[-1]


@dataclass
class Run:
    """A recording tracker (a retraining's nested run, or the parent)."""

    run_id: str
    calls: list[tuple] = field(default_factory=list)
    children: list[Run] = field(default_factory=list)
    failed: list[BaseException] = field(default_factory=list)

    @contextmanager
    def nested(self, name: str, run_id: str | None = None):
        child = Run(run_id or f"new-{name}")
        self.children.append(child)
        self.calls.append(("nested", name, run_id))
        try:
            yield child
        except BaseException as error:
            child.failed.append(error)
            raise

    def set_tags(self, tags):
        self.calls.append(("set_tags", dict(tags)))

    def log_params(self, params):
        self.calls.append(("log_params", dict(params)))

    def log_metrics(self, metrics, step=0):
        self.calls.append(("log_metrics", dict(metrics), step))

    def log_dataset(self, name, x, y, source, digest, context):
        self.calls.append(("log_dataset", name, x, y, source, digest, context))

    def log_encoder_model(self, model, example, registered_model_name=None):
        weight = float(model.linear.weight.detach().flatten()[0])
        self.calls.append(("log_encoder_model", model.name, weight, example, registered_model_name))

    def of(self, kind: str) -> list[tuple]:
        return [call[1:] for call in self.calls if call[0] == kind]

    def child(self, name: str) -> Run:
        (child,) = [c for c in self.children if c.run_id == f"new-{name}"]
        return child


class Plugin:
    name = "fake"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.asked: list[str] = []

    def provisioned_files(self, data_dir: str) -> dict[Path, str]:
        self.asked.append(data_dir)
        return {self.folder / "a.bin": "1" * 64, Path("/elsewhere/b.bin"): "2" * 64}


INITIAL = {"linear.weight": torch.full((1, 2), 0.5), "linear.bias": torch.full((1,), 0.5)}

# 3 images of 2x2 pixels, values 1..12; method A ranks pixels in order, B in reverse.
X = torch.arange(1.0, 13.0).view(3, 1, 2, 2)
SCORES = {"A": X.clone(), "B": -X.clone(), "C": X.clone() * 2}


@dataclass
class Fits:
    """What the stand-in fit was handed."""

    calls: list[dict[str, Any]] = field(default_factory=list)


def _loss(x: torch.Tensor) -> float:
    return float(x.sum()) / 100


def _retrainer(monkeypatch, tmp_path, **settings) -> tuple[Retrainer, Run, Fits, Models]:
    fits = Fits()

    def tracked_fit(model, training, device, tracker, train, test, log_epoch):
        fits.calls.append(
            {
                "name": model.name,
                "start": {k: v.clone() for k, v in model.state_dict().items()},
                "training": training,
                "device": device,
                "tracker": tracker.run_id,
                "x": train.x.clone(),
                "y": train.y,
                "test": test,
            }
        )
        for epoch in range(2):
            log_epoch(epoch, {"train_loss": 1.0 + epoch, "test_loss": 2.0 + epoch})
        with torch.no_grad():  # the "trained" weights depend on the training set
            model.linear.weight.fill_(float(train.x.sum()))
        return FitResult(best_epoch=0, best_test_loss=_loss(train.x))

    monkeypatch.setattr(retraining, "tracked_fit", tracked_fit)

    def split_digest(dataset, settings, role, size):
        assert dataset is models.dataset and settings is config  # the run's data and settings
        return f"{role}:{size}"

    monkeypatch.setattr(retraining, "split_digest", split_digest)
    config = SimpleNamespace(
        retraining_workers=1,
        device="cpu",
        log_retrained_models=False,
        register_retrained=False,
        data_dir="the-data",
        split="small",
    )
    config.__dict__.update(settings)
    models = Models(Plugin(tmp_path / "files"))
    test = Split(torch.full((4, 1, 2, 2), 9.0), torch.arange(4))
    splits = Splits(Split(X.clone(), torch.tensor([7, 8, 9])), test, test)
    parent = Run("parent")
    retrainer = Retrainer(
        config,
        "training-settings",
        models,
        parent,
        INITIAL,
        splits,
        torch.tensor(-1.0),  # the data set's baseline: what a removed pixel becomes
        retraining.InterruptionHook(None),
    )
    return retrainer, parent, fits, models


def _masked(scores: torch.Tensor, k: int) -> torch.Tensor:
    """X without each image's k highest-scoring pixels (set to the baseline, -1)."""
    flat = X.view(3, 4).clone()
    top = torch.topk(scores.view(3, 4), k, dim=1).indices
    flat.scatter_(1, top, -1.0)
    return flat.view_as(X)


def test_workers_follow_the_settings(monkeypatch, tmp_path):
    retrainer, *_ = _retrainer(monkeypatch, tmp_path, retraining_workers=3)
    assert retrainer.workers.workers == 3
    assert retrainer.trained == {} and retrainer.digests == set()


def test_each_retraining_starts_from_the_initial_weights_on_its_masked_set(monkeypatch, tmp_path):
    retrainer, parent, fits, models = _retrainer(monkeypatch, tmp_path)
    tasks = [Task("A", 25.0), Task("B", 50.0, "old-run")]
    outcomes, side = retrainer.all(tasks, SCORES)
    assert side is None
    assert [m.name for m in models.made] == ["roar_A_25", "roar_B_50"]
    assert [f["name"] for f in fits.calls] == ["roar_A_25", "roar_B_50"]
    for fit in fits.calls:
        assert fit["start"].keys() == INITIAL.keys()
        for key, value in INITIAL.items():
            assert torch.equal(fit["start"][key], value)
        assert fit["training"] == "training-settings" and fit["device"] == torch.device("cpu")
        assert fit["test"] is retrainer.splits.test
        assert torch.equal(fit["y"], torch.tensor([7, 8, 9]))
    assert torch.equal(fits.calls[0]["x"], _masked(SCORES["A"], 1))
    assert torch.equal(fits.calls[1]["x"], _masked(SCORES["B"], 2))
    assert torch.equal(retrainer.splits.train.x, X)  # the training split is left as it was

    # The nested runs: named method-k, the second reopening its unfinished run.
    assert parent.of("nested") == [("A-25", None), ("B-50", "old-run")]
    assert [f["tracker"] for f in fits.calls] == ["new-A-25", "old-run"]
    assert outcomes.keys() == {("A", "25"), ("B", "50")}
    a, b = outcomes["A", "25"], outcomes["B", "50"]
    assert (a.run_id, a.loss) == ("new-A-25", pytest.approx(_loss(_masked(SCORES["A"], 1))))
    assert (b.run_id, b.loss) == ("old-run", pytest.approx(_loss(_masked(SCORES["B"], 2))))
    assert a.seconds >= 0 and b.seconds >= 0

    child = parent.child("A-25")
    assert child.calls[0] == ("set_tags", {TAG + "method": "A", TAG + "k": "25"})
    assert child.of("log_params") == [({"method": "A", "k": "25", "n_pixels_removed": 1},)]
    assert parent.children[1].of("log_params")[0][0]["n_pixels_removed"] == 2
    # fit/<loss> each epoch (step = epoch), then the test loss
    assert child.of("log_metrics") == [
        ({"fit/train_loss": 1.0, "fit/test_loss": 2.0}, 0),
        ({"fit/train_loss": 2.0, "fit/test_loss": 3.0}, 1),
        ({"roar/test_loss": pytest.approx(a.loss)}, 0),
    ]
    assert child.of("log_encoder_model") == []  # not asked to log models


def test_a_retraining_logs_its_masked_training_set_and_the_test_set(monkeypatch, tmp_path):
    retrainer, parent, _, models = _retrainer(monkeypatch, tmp_path)
    retrainer.all([Task("B", 75.0)], SCORES)
    datasets = parent.child("B-75").of("log_dataset")
    assert [d[0] for d in datasets] == ["fake-small-train-without-top75-B", "fake-small-test"]
    train, test = datasets
    assert torch.equal(train[1], _masked(SCORES["B"], 3))
    assert torch.equal(train[2], torch.tensor([7, 8, 9]))
    assert train[3:] == (tmp_path / "files", "train-B-75:3", "train")
    assert test[1] is retrainer.splits.test.x and test[2] is retrainer.splits.test.y
    assert test[3:] == (tmp_path / "files", "test:4", "test")
    assert set(models.dataset.asked) == {"the-data"}


def test_an_identical_training_set_is_trained_once_and_reused_last(monkeypatch, tmp_path):
    retrainer, parent, fits, models = _retrainer(
        monkeypatch, tmp_path, log_retrained_models=True, register_retrained=True
    )
    # k = 100 % removes every pixel whatever the method: B's and C's sets are A's.
    tasks = [Task("A", 100.0), Task("B", 100.0), Task("A", 50.0), Task("C", 100.0)]
    outcomes, _ = retrainer.all(tasks, SCORES)
    assert [f["name"] for f in fits.calls] == ["roar_A_100", "roar_A_50"]
    assert parent.of("nested") == [
        ("A-100", None),
        ("A-50", None),
        ("B-100", None),
        ("C-100", None),
    ]
    trained = outcomes["A", "100"]
    assert list(outcomes) == [("A", "100"), ("A", "50"), ("B", "100"), ("C", "100")]
    for method in ("B", "C"):
        reuse = outcomes[method, "100"]
        assert reuse.run_id == f"new-{method}-100" and reuse.loss == trained.loss
        child = parent.child(f"{method}-100")
        assert {TAG + "same_training_data_as": "new-A-100"} in [t for (t,) in child.of("set_tags")]
        assert child.of("log_params") == [({"method": method, "k": "100", "n_pixels_removed": 4},)]
        assert [d[0] for d in child.of("log_dataset")][
            0
        ] == f"fake-small-train-without-top100-{method}"
        assert child.of("log_metrics") == [({"roar/test_loss": trained.loss}, 0)]
        # its model is A-100's retrained one, logged and registered under its own name
        ((name, weight, example, registered),) = child.of("log_encoder_model")
        assert name == f"roar_{method}_100" and weight == -12.0  # 12 pixels, all -1
        assert registered == f"lfxai-fake-roar-test-ae-{method.lower()}-100"
        assert torch.equal(example, retrainer.splits.test.x[:2])
    ((name, weight, _, registered),) = parent.child("A-50").of("log_encoder_model")
    assert (name, registered) == ("roar_A_50", "lfxai-fake-roar-test-ae-a-50")
    assert weight == float(_masked(SCORES["A"], 2).sum())
    assert len(models.made) == 4  # each nested run gets its own model
    # a later call (the model-based methods, after the model-free ones) still reuses
    outcomes, _ = retrainer.all([Task("D", 100.0)], {"D": X})
    assert len(fits.calls) == 2 and outcomes["D", "100"].loss == trained.loss


def test_logged_models_are_not_registered_unless_asked(monkeypatch, tmp_path):
    retrainer, parent, _, _ = _retrainer(monkeypatch, tmp_path, log_retrained_models=True)
    retrainer.all([Task("A", 25.0)], SCORES)
    ((name, _, _, registered),) = parent.child("A-25").of("log_encoder_model")
    assert name == "roar_A_25" and registered is None


def test_a_models_export_waits_for_the_other_trainings(monkeypatch, tmp_path):
    retrainer, parent, _, _ = _retrainer(monkeypatch, tmp_path, log_retrained_models=True)
    events = []

    @contextmanager
    def exclusive():
        events.append("enter")
        yield
        events.append("exit")

    monkeypatch.setattr(retrainer.workers, "exclusive", exclusive)
    monkeypatch.setattr(retrainer.workers, "stop_point", lambda: events.append("stop point"))
    original = Run.log_encoder_model
    monkeypatch.setattr(
        Run, "log_encoder_model", lambda *a, **k: events.append("export") or original(*a, **k)
    )
    retrainer.all([Task("A", 25.0)], SCORES)
    # a stop may reach the training after each epoch; the export runs alone
    assert events == ["stop point", "stop point", "enter", "export", "exit"]


def test_the_base_model_trains_beside_the_retrainings_and_is_logged_first(monkeypatch, tmp_path):
    retrainer, parent, fits, models = _retrainer(monkeypatch, tmp_path)
    assert retrainer.base_job({TAG + "base_test_loss": "0.5"}) is None  # a resume has it
    assert models.made == []
    job = retrainer.base_job({TAG + "initial_weights": "yes"})
    assert [m.name for m in models.made] == ["roar_test_base"]
    seen = []

    def then(result):
        seen.append((result, [f["name"] for f in fits.calls]))
        return "logged"

    outcomes, side = retrainer.all([Task("A", 50.0)], SCORES, beside=job, then=then)
    assert side == "logged"
    ((result, trained_by_then),) = seen
    model, loss = result
    assert model is models.made[0]
    assert trained_by_then == ["roar_test_base"]  # logged before any retraining ran
    # the base model trains on the whole training set, logging to the experiment's run
    base = fits.calls[0]
    assert torch.equal(base["x"], X) and base["tracker"] == "parent"
    for key, value in INITIAL.items():
        assert torch.equal(base["start"][key], value)
    assert loss == pytest.approx(_loss(X))
    assert parent.of("log_metrics") == [
        ({"fit/train_loss": 1.0, "fit/test_loss": 2.0}, 0),
        ({"fit/train_loss": 2.0, "fit/test_loss": 3.0}, 1),
    ]
    assert list(outcomes) == [("A", "50")] and outcomes["A", "50"].run_id == "new-A-50"


def test_without_then_the_base_models_result_is_not_kept(monkeypatch, tmp_path):
    retrainer, _, fits, _ = _retrainer(monkeypatch, tmp_path)
    job = retrainer.base_job({})
    outcomes, side = retrainer.all([Task("A", 50.0)], SCORES, beside=job)
    assert side is None and list(outcomes) == [("A", "50")]
    assert [f["name"] for f in fits.calls] == ["roar_test_base", "roar_A_50"]


def test_an_interruption_fails_the_nested_run_before_it_logs_or_trains(monkeypatch, tmp_path):
    retrainer, parent, fits, _ = _retrainer(monkeypatch, tmp_path)
    retrainer.interrupt = retraining.InterruptionHook(1)
    with pytest.raises(RuntimeError, match="after 1 retrainings"):
        retrainer.all([Task("A", 25.0), Task("A", 50.0)], SCORES)
    assert [f["name"] for f in fits.calls] == ["roar_A_25"]
    second = parent.child("A-50")
    assert len(second.failed) == 1  # raised inside the nested run: it ends FAILED
    assert second.calls == [("set_tags", {TAG + "method": "A", TAG + "k": "50"})]


def test_the_model_factory_builds_the_datasets_model_for_the_settings():
    built = []
    dataset = SimpleNamespace(build_model=lambda *args: built.append(args) or "model")
    config = SimpleNamespace(dim_latent=4, pretext="denoising")
    splits = Splits(Split(X, torch.zeros(3)), Split(X, torch.zeros(3)), Split(X, torch.zeros(3)))
    assert retraining.ModelFactory(dataset, config, splits)("roar_A_10") == "model"
    assert built == [(4, torch.Size([1, 2, 2]), "denoising", "roar_A_10")]


def test_a_retrainings_seconds_are_its_own_wall_time_also_for_a_reuse(monkeypatch, tmp_path):
    retrainer, *_ = _retrainer(monkeypatch, tmp_path)
    ticks = iter(range(10, 1000, 3))
    monkeypatch.setattr(retraining, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    outcomes, _ = retrainer.all([Task("A", 100.0), Task("B", 100.0)], SCORES)
    assert outcomes["A", "100"].seconds == 3  # one tick from its start to its end
    assert outcomes["B", "100"].seconds == 3


def test_the_top_pct_percent_of_each_images_features_are_removed(monkeypatch, tmp_path):
    retrainer, *_ = _retrainer(monkeypatch, tmp_path)
    x = torch.arange(1.0, 401.0).view(2, 1, 10, 20)  # 200 features: 50 % is 100 of them
    test = retrainer.splits.test
    retrainer.splits = Splits(Split(x, torch.tensor([1, 2])), test, test)
    scores = torch.rand(2, 1, 10, 20, generator=torch.Generator().manual_seed(0))
    masked = retrainer._masked(Task("A", 50.0), scores)  # noqa: SLF001
    assert masked.n_removed == 100
    for i in range(2):
        top = set(torch.topk(scores[i].flatten(), 100).indices.tolist())
        removed = set(torch.nonzero(masked.split.x[i].flatten() == -1).flatten().tolist())
        assert removed == top
    assert torch.equal(masked.split.y, torch.tensor([1, 2]))
    assert masked.digest == retraining._digest(masked.split.x)  # noqa: SLF001


def test_a_training_set_of_one_image_is_masked_too(monkeypatch, tmp_path):
    retrainer, *_ = _retrainer(monkeypatch, tmp_path)
    test = retrainer.splits.test
    retrainer.splits = Splits(Split(X[:1].clone(), torch.tensor([7])), test, test)
    masked = retrainer._masked(Task("A", 50.0), SCORES["A"][:1])  # noqa: SLF001
    assert masked.n_removed == 2
    assert torch.equal(masked.split.x, _masked(SCORES["A"], 2)[:1])
