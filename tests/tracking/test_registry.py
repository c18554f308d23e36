"""Registering an encoder: names, aliases, each version's description and tags, alias races.

The encoder's own logging (torch.export, our files) is tested in test_tracking_encoders.py;
here ``log_encoder_model`` is replaced by a bare model version, so that what
``register_encoder`` adds is checked in milliseconds.
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import mlflow
import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from lfxai.tracking import Tracker
from lfxai.tracking.registry import (
    default_aliases,
    encoder_description,
    experiment_alias,
    first_line,
    registered_name,
)
from lfxai.tracking.tags import DATA_DIGEST_TAG, PARENT_TAG, RUN_NAME_TAG
from tests.helpers import open_run


def test_names_and_aliases_have_one_spelling():
    assert registered_name("mnist", "denoising AE", 4) == "lfxai-mnist-denoising-ae-d4"
    assert registered_name("ecg5000", "beta_tc_vae") == "lfxai-ecg5000-beta-tc-vae"
    assert experiment_alias("roar_test", "paper") == "roar_test-paper"
    assert default_aliases("pretext", "quick") == ("quick", "pretext-quick")
    assert default_aliases("?", "quick") == ("quick",)  # no experiment made the run
    assert default_aliases("", "smoke") == ("smoke",)
    assert default_aliases("pretext", None) == default_aliases("pretext", "") == ()


def test_the_model_description_names_what_each_version_carries():
    # The registered model's text in the UI: what the tags and aliases below mean.
    assert encoder_description("lfxai-mnist-ae-d4", "1, 28, 28", 4, "the MNIST AE") == (
        "Encoder of the MNIST AE: inputs (N, 1, 28, 28) to codes (N, 4), registered by "
        "lfxai's experiments. Each version's description and tags (`lfxai.experiment`, "
        "`lfxai.profile`, `lfxai.run_name`, `lfxai.data_digest`, `test_loss`) say which run "
        "made it. Aliases: `@<profile>` (e.g. `@paper`) is the newest version of that profile, "
        "`@<experiment>-<profile>` (e.g. `@consistency_features-paper`) the newest that "
        "experiment trained, which its `pretrained=true` reuses. A plain torch.nn.Module: "
        "`lfxai.load_encoder('models:/lfxai-mnist-ae-d4@paper')`."
    )


class _QuickTracker(Tracker):
    """A tracker whose 'logged encoder' is a bare new version of the registered model."""

    logged: tuple = ()

    def log_encoder_model(self, model, example, registered_model_name=None, module="encoder"):
        self.logged = (model, example)
        if registered_model_name is None:
            return f"runs:/{self.run_id}/encoder"
        with contextlib.suppress(MlflowException):  # exists
            self.client.create_registered_model(registered_model_name)
        version = self.client.create_model_version(
            registered_model_name, source="file:///encoder", run_id=self.run_id
        )
        return f"models:/{registered_model_name}/{version.version}"


def _register(run_tags: dict[str, str], parent: str | None = None, **kwargs) -> tuple[str, str]:
    tags = {**run_tags, **({PARENT_TAG: parent} if parent else {})}
    run_id = open_run(tags=tags).info.run_id
    if RUN_NAME_TAG not in run_tags:  # MLflow names every new run; a run may have no name
        MlflowClient().delete_tag(run_id, RUN_NAME_TAG)
    with mlflow.start_run(run_id=run_id):
        uri = _QuickTracker(run_id).register_encoder(
            torch.nn.Identity(), torch.zeros(2, 1), kwargs.pop("name", "m"), 0.1234567, **kwargs
        )
    return run_id, uri


def _version(uri: str):
    name, version = uri.removeprefix("models:/").split("/")
    return MlflowClient().get_model_version(name, version)


def test_a_version_says_which_run_made_it_and_takes_its_aliases(mlflow_store):
    tags = {
        "lfxai.experiment": "consistency_features",
        "lfxai.profile": "paper",
        "lfxai.dataset": "mnist",
        RUN_NAME_TAG: "my-run",
        DATA_DIGEST_TAG: "dg1",
    }
    run_id, uri = _register(
        tags, about="what m is", details="batch 300", tags={"lfxai.pretext": "denoising"}
    )
    assert uri == "models:/m/1"
    version = _version(uri)
    assert version.description == (
        f"consistency_features (paper profile), run 'my-run' ({run_id}). "
        "Test loss 0.123457; data digest dg1; batch 300."
    )
    assert version.tags == {
        "lfxai.dataset": "mnist",
        "lfxai.experiment": "consistency_features",
        "lfxai.profile": "paper",
        "lfxai.run_name": "my-run",
        "lfxai.data_digest": "dg1",
        "lfxai.pretext": "denoising",
        "test_loss": "0.123457",
        # the aliases it claimed (``move_alias``)
        "lfxai.alias.paper": "true",
        "lfxai.alias.consistency_features-paper": "true",
    }
    model = MlflowClient().get_registered_model("m")
    assert model.description == "what m is"
    assert sorted(model.aliases) == ["consistency_features-paper", "paper"]
    # A second version of another run moves both aliases; explicit aliases move only those.
    _, second = _register(tags, about="what m is")
    _, third = _register(tags, about="what m is", aliases=("mine",))
    assert MlflowClient().get_registered_model("m").aliases == {
        "paper": 2,
        "consistency_features-paper": 2,
        "mine": 3,
    }
    assert _version(second).description.endswith("data digest dg1.")  # no details


def test_a_nested_run_s_version_carries_its_parent_s_data_digest(mlflow_store):
    parent, _ = _register({DATA_DIGEST_TAG: "parent-digest"}, name=None, about="")
    run_id, uri = _register({}, parent=parent, about="m")
    version = _version(uri)
    assert version.description == (
        f"? (? profile), run '{run_id}' ({run_id}). Test loss 0.123457; data digest parent-digest."
    )
    assert version.tags["lfxai.data_digest"] == "parent-digest"
    assert (version.tags["lfxai.dataset"], version.tags["lfxai.experiment"]) == ("?", "?")
    assert (version.tags["lfxai.profile"], version.tags["lfxai.run_name"]) == ("?", run_id)
    assert MlflowClient().get_registered_model("m").aliases == {}  # no profile: no alias
    # Its own digest wins over its parent's; with neither, the digest is unknown.
    _, own = _register({DATA_DIGEST_TAG: "own"}, parent=parent, about="m")
    assert _version(own).tags["lfxai.data_digest"] == "own"
    _, none = _register({}, about="m")
    assert _version(none).tags["lfxai.data_digest"] == "?"


def test_without_a_name_the_encoder_is_logged_only(mlflow_store):
    run_id, uri = _register({"lfxai.profile": "paper"}, name=None, about="m")
    assert uri == f"runs:/{run_id}/encoder"
    assert MlflowClient().search_registered_models() == []


class _Races(Tracker):
    """``move_alias`` against a scripted registry: what each read of the alias and of the
    newest claimant returns, and a write that always fails as a lost race would."""

    def __init__(self, run_id: str, reads: list[str | None], claims: list[int]) -> None:
        super().__init__(run_id)
        self.reads, self.claims, self.writes, self.claimed = list(reads), list(claims), 0, []
        self.client = SimpleNamespace(
            set_registered_model_alias=self.set_alias,
            set_model_version_tag=lambda *args: self.claimed.append(args),
        )

    def model_version_by_alias(self, name, alias):
        assert (name, alias) == ("m", "paper")
        version = self.reads.pop(0)
        return None if version is None else type("V", (), {"version": version})()

    def newest_claimant(self, name, alias):
        return self.claims.pop(0)

    def set_alias(self, name, alias, version):
        self.writes += 1
        raise MlflowException("duplicate key value violates unique constraint")


def test_an_alias_race_is_retried_a_bounded_number_of_times():
    # Each write loses to another worker, whose alias then disappears again.
    tracker = _Races("r", [None, "1"] * 5, [5] * 5)
    with pytest.raises(MlflowException):
        tracker.move_alias("m", "paper", "5")
    assert tracker.writes == 5 and tracker.reads == [] and tracker.claims == []
    assert tracker.claimed == [("m", "5", "lfxai.alias.paper", "true")]
    tracker = _Races("r", [None, "1"] * 2, [5] * 2)
    with pytest.raises(MlflowException):
        tracker.move_alias("m", "paper", "5", attempts=2)
    assert tracker.writes == 2


def test_an_alias_is_not_rewritten_and_a_real_failure_is_not_retried():
    same = _Races("r", ["5"], [5, 5])
    same.move_alias("m", "paper", "5")  # already on the newest claimant: no write
    assert same.writes == 0 and same.claims == []
    newer = _Races("r", ["6"], [6, 6])
    newer.move_alias("m", "paper", "5")  # a newer version holds it: left there
    assert newer.writes == 0
    for reads in ([None, None], ["3"]):  # no alias appeared; an older one was there
        tracker = _Races("r", reads, [5])
        with pytest.raises(MlflowException):
            tracker.move_alias("m", "paper", "5")
        assert tracker.writes == 1 and tracker.reads == []


def test_claims_that_keep_coming_end_in_an_error_that_names_the_alias():
    tracker = _Races("r", [None, "6", "7", "7"], [5, 6, 6, 7, 7, 8])
    tracker.set_alias = lambda *args: None  # every write lands, then a newer claim appears
    tracker.client.set_registered_model_alias = tracker.set_alias
    with pytest.raises(MlflowException, match="'paper' of registered model 'm'.*version 7"):
        tracker.move_alias("m", "paper", "5", attempts=3)


def test_the_newest_claimant_is_the_highest_version_not_the_last_updated(mlflow_store, tmp_path):
    client = MlflowClient()
    client.create_registered_model("m")
    for _ in range(3):
        client.create_model_version("m", source=str(tmp_path), run_id=None)
    tracker = Tracker("r")
    for version in ("3", "1"):  # version 1's run finishes last: its version is updated last
        tracker.annotate_model_version("m", version, "m", f"v{version}", {}, ("paper",))
    assert tracker.newest_claimant("m", "paper") == 3
    assert str(client.get_model_version_by_alias("m", "paper").version) == "3"
    assert "lfxai.alias.paper" not in client.get_model_version("m", "2").tags


def test_an_error_s_first_line_is_empty_for_an_empty_message():
    assert first_line(MlflowException("")) == ""
    assert first_line(MlflowException("  refused\nsecond line")) == "refused"


def test_registered_models_are_listed_by_prefix(mlflow_store):
    client = MlflowClient()
    for name in ("lfxai-mnist-ae", "other", "lfxai-ecg5000-ae"):
        client.create_registered_model(name)
    tracker = Tracker("r")
    assert tracker.registered_models("lfxai-") == ["lfxai-ecg5000-ae", "lfxai-mnist-ae"]
    assert tracker.registered_models() == ["lfxai-ecg5000-ae", "lfxai-mnist-ae", "other"]


def test_a_run_tags_every_version_it_registered_and_no_other(mlflow_store):
    mine, other = (_QuickTracker(open_run().info.run_id) for _ in range(2))
    for tracker, name in ((mine, "a"), (mine, "b"), (other, "a")):
        tracker.log_encoder_model(torch.nn.Identity(), torch.zeros(2, 1), name)
    assert mine.tag_model_versions({"lfxai.verdict": "holds", "k": "v"}) == 2
    tagged = {(v.name, v.version): v.tags for v in MlflowClient().search_model_versions()}
    assert tagged == {
        ("a", 1): {"lfxai.verdict": "holds", "k": "v"},
        ("b", 1): {"lfxai.verdict": "holds", "k": "v"},
        ("a", 2): {},
    }


def test_versions_are_listed_newest_first_by_number_and_aliases_sorted(mlflow_store, tmp_path):
    client = MlflowClient()
    client.create_registered_model("m")
    for _ in range(10):
        client.create_model_version("m", source=str(tmp_path), run_id=None)
    client.set_registered_model_alias("m", "quick", "2")
    client.set_registered_model_alias("m", "paper", "10")
    tracker = Tracker("r")
    assert [int(v.version) for v in tracker.model_versions("m")] == list(range(10, 0, -1))
    assert tracker.model_aliases("m") == ["paper", "quick"]
    assert tracker.model_versions("no-such-model") == []
    assert tracker.model_versions("it's") == []  # a name the store's search cannot parse
    assert tracker.model_aliases("no-such-model") == []
    assert tracker.model_version_by_alias("m", "paper").version == 10
    assert tracker.model_version_by_alias("m", "no-such-alias") is None


def test_the_encoder_registered_is_the_callers_model_and_example(mlflow_store):
    model, example = torch.nn.Identity(), torch.zeros(2, 1)
    with mlflow.start_run() as run:
        tracker = _QuickTracker(run.info.run_id)
        tracker.register_encoder(model, example, "m", 0.5, about="m")
    assert tracker.logged[0] is model and tracker.logged[1] is example


class _UnregisteredTracker(_QuickTracker):
    """Logs the model, but the store gives it no registered version (a logged model's URI)."""

    def log_encoder_model(self, model, example, registered_model_name=None, module="encoder"):
        return "models:/m-0123456789abcdef"


def test_a_model_the_store_did_not_register_is_returned_unannotated(mlflow_store):
    with mlflow.start_run() as run:
        uri = _UnregisteredTracker(run.info.run_id).register_encoder(
            torch.nn.Identity(), torch.zeros(2, 1), "m", 0.5, about="m"
        )
    assert uri == "models:/m-0123456789abcdef"
    assert MlflowClient().search_registered_models() == []
