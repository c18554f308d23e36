"""Which runs the report uses, on plain run records (no store): each rule of the choice."""

from __future__ import annotations

import pytest

from lfxai.config import ConfigError
from lfxai.experiments.registry import entries, get_experiment
from lfxai.report import collect
from lfxai.report.collect import Entry, differences, material, wall_seconds
from lfxai.tracking import RunRecord
from lfxai.tracking.reader import PARENT_TAG

ENTRY = ("mnist", "consistency_features")
SCHEMA = get_experiment(*ENTRY).schema


def record(
    run_id: str = "r1",
    params: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    end: int | None = 61_000,
    status: str = "FINISHED",
    tags: dict[str, str] | None = None,
) -> RunRecord:
    """A smoke-profile run of MNIST's consistency_features, 60 s long, with ``tags`` added."""
    base = {"lfxai.dataset": "mnist", "lfxai.experiment": "consistency_features"}
    base |= {"lfxai.profile": "smoke"} | (tags or {})
    return RunRecord(
        run_id,
        "mnist-consistency_features",
        "1",
        status,
        1_000,
        end,
        base,
        params or {},
        metrics or {},
    )


def test_differences_compare_typed_values_and_only_settings_both_sides_have():
    run = record(params={"config.lr": "0.001", "config.n_epochs": "5", "config.old": "x"})
    settings = {"lr": "1e-3", "n_epochs": "10", "batch_size": "100", "old": "y"}
    # 0.001 == 1e-3 once parsed; batch_size was not logged; "old" is compared as text
    assert differences(run, settings, SCHEMA) == {"n_epochs": "5", "old": "x"}
    assert differences(record(params={"config.n_epochs": "10"}), settings, SCHEMA) == {}
    # a setting the code no longer has is compared as text: the same text is no difference
    assert differences(record(params={"config.old": "y"}), settings, SCHEMA) == {}


def test_material_differences_leave_out_neutral_settings_and_the_seed_only_when_asked():
    diff = {"device": "cuda", "data_dir": "/d", "n_plots": "3", "seed": "2", "lr": "0.1"}
    assert material(diff) == {"seed": "2", "lr": "0.1"}
    assert material(diff, seed=True) == {"lr": "0.1"}


def test_wall_time_is_the_logged_total_else_end_minus_start_else_none():
    assert wall_seconds(record(metrics={"time/total_seconds": 12.5})) == 12.5
    assert wall_seconds(record()) == 60.0  # (61 000 - 1 000) ms
    assert wall_seconds(record(end=None)) is None


def test_an_entry_names_its_experiment_its_newest_run_and_the_command_that_makes_it():
    entry = Entry("mnist", "consistency_features", "paper")
    assert entry.name == "mnist-consistency_features" and entry.run is None
    assert entry.command() == (
        "mlflow run . -e mnist -P name=consistency_features -P profile=paper "
        "--env-manager local --experiment-name mnist-consistency_features"
    )
    entry.runs = [record("new"), record("old")]
    assert entry.run.run_id == "new"


def test_entries_follow_the_paper_s_data_set_order_then_each_plugin_s_list():
    ordered = collect.ordered_entries()
    assert sorted(ordered) == sorted(entries())
    datasets = [d for d, _ in ordered]
    firsts = [d for i, d in enumerate(datasets) if d not in datasets[:i]]
    assert firsts == [d for d in collect.DATASET_ORDER if d in datasets]
    mnist = [e for d, e in ordered if d == "mnist"]
    assert mnist[0] == "consistency_features"


def test_top_level_runs_exclude_nested_and_moved_runs():
    runs = [record("a"), record("b", tags={PARENT_TAG: "a"}), record("c")]
    runs[2].tags["lfxai.moved_to"] = "elsewhere"
    assert [r.run_id for r in collect._top_level(runs)] == ["a"]  # noqa: SLF001


class Reader:
    """Answers ``run(run_id)`` from a dict; an unknown id is a LookupError, as the store's."""

    def __init__(self, *runs: RunRecord) -> None:
        self.by_id = {r.run_id: r for r in runs}

    def run(self, run_id: str) -> RunRecord:
        if run_id not in self.by_id:
            raise LookupError(f"no run {run_id}")
        return self.by_id[run_id]


def test_given_runs_are_checked_one_by_one_and_each_refusal_names_the_run():
    good = record("good")
    assert collect.check_given(Reader(good), ["good"], "smoke") == [good]
    assert collect.check_given(Reader(good), [], "smoke") == []
    with pytest.raises(ConfigError, match=r"^run id 'nope': no run nope$"):
        collect.check_given(Reader(good), ["nope"], "smoke")
    nested = record("child", tags={PARENT_TAG: "good"})
    with pytest.raises(ConfigError, match=r"^run id child is a nested run of good, not a top"):
        collect.check_given(Reader(nested), ["child"], "smoke")
    other = record("other", tags={"lfxai.experiment": "nothing"})
    with pytest.raises(ConfigError) as refused:
        collect.check_given(Reader(other), ["other"], "smoke")
    valid = sorted(f"{d}-{e}" for d, e in entries())
    assert str(refused.value) == (
        "run id other is a run of 'mnist-consistency_features', not a top-level run of an "
        f"lfxai experiment; valid: runs of {valid}"
    )
    with pytest.raises(ConfigError) as refused:
        collect.check_given(Reader(good), ["good"], "paper")
    assert str(refused.value) == (
        "run id good is a 'smoke'-profile run; this report is of the 'paper' profile "
        "(pass profile=smoke)"
    )
    failed = record("failed", status="FAILED")
    with pytest.raises(ConfigError, match=r"^run id failed is FAILED, not FINISHED$"):
        collect.check_given(Reader(failed), ["failed"], "smoke")


def test_an_unknown_profile_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match=r"unknown profile 'huge'; valid choices: \['paper'"):
        collect.check_profile("huge")
    collect.check_profile("quick")


class Store:
    """A stand-in store reader for :func:`collect.select`: the runs of one experiment, newest
    first, as ``reader.runs`` returns them; every query is recorded."""

    def __init__(self, runs: list[RunRecord], names: list[str] | None = None) -> None:
        self.by_id = {r.run_id: r for r in runs}
        self.listed = runs
        self.names = ["mnist-consistency_features"] if names is None else names
        self.queries: list[tuple[str, str]] = []

    def experiment_names(self) -> list[str]:
        return self.names

    def runs(self, name: str, filter_string: str) -> list[RunRecord]:
        self.queries.append((name, filter_string))
        return list(self.listed)

    def run(self, run_id: str) -> RunRecord:
        return self.by_id[run_id]


SMOKE = {f"config.{k}": v for k, v in collect.profile_settings(*ENTRY, "smoke").items()}


def smoke_run(
    run_id: str, status: str = "FINISHED", end: int | None = 61_000, **changed
) -> RunRecord:
    """A top-level smoke run of ``ENTRY`` with the profile's settings but ``changed``."""
    params = SMOKE | {f"config.{k}": str(v) for k, v in changed.items()}
    return record(run_id, params=params, status=status, end=end)


def _entry(entries: list[Entry]) -> Entry:
    (found,) = [e for e in entries if (e.dataset, e.experiment) == ENTRY]
    return found


def test_select_prefers_the_newest_run_of_the_profile_s_settings_and_aggregates_its_seeds():
    runs = [
        smoke_run("running", status="RUNNING", end=None),  # no result, no cost yet
        smoke_run("killed", status="KILLED"),  # a cost, not a result
        smoke_run("short", n_train=300),  # another scale: a cost
        smoke_run("other-lr", lr=0.01),  # newer, but not the profile's settings
        smoke_run("exact", seed=1),  # the newest of the profile's settings
        smoke_run("elsewhere", data_dir="/mnt/data"),  # a neutral difference: aggregated
        smoke_run("bigger", n_epochs=2),
        record("nested", params=SMOKE, tags={PARENT_TAG: "exact"}),
        record("foreign", params=SMOKE, tags={"lfxai.experiment": "roar_test"}),
    ]
    store = Store(runs)
    selected = collect.select(store, "smoke")
    assert [(e.dataset, e.experiment) for e in selected] == collect.ordered_entries()
    assert store.queries == [("mnist-consistency_features", "tags.`lfxai.profile` = 'smoke'")]
    entry = _entry(selected)
    assert [r.run_id for r in entry.runs] == ["exact", "elsewhere"]
    assert entry.differs == {}
    assert entry.profile_settings == {k.removeprefix("config."): v for k, v in SMOKE.items()}
    assert [r.run_id for r in entry.measured] == ["killed", "short", "other-lr", "bigger"]
    assert all(not e.runs and not e.measured for e in selected if e is not entry)
    assert {e.profile for e in selected} == {"smoke"}


def test_select_falls_back_to_the_newest_run_at_scale_and_states_its_differences():
    runs = [
        smoke_run("short", n_train=300, lr=0.01),  # shortened: never the result
        smoke_run("other-lr", lr=0.01, seed=3),
        smoke_run("other-lr-again", lr="1e-2", seed=4, device="cpu"),  # its settings again
        smoke_run("other-wd", weight_decay=0.1),
    ]
    entry = _entry(collect.select(Store(runs), "smoke"))
    assert [r.run_id for r in entry.runs] == ["other-lr", "other-lr-again"]
    assert entry.differs == {"lr": "0.01"}
    assert [r.run_id for r in entry.measured] == ["short", "other-wd"]


def test_select_uses_the_given_runs_only_and_skips_experiments_the_store_lacks():
    runs = [smoke_run("exact"), smoke_run("old-lr", lr=0.01)]
    entry = _entry(collect.select(Store(runs), "smoke", ["old-lr"]))
    assert [r.run_id for r in entry.runs] == ["old-lr"]
    assert entry.differs == {"lr": "0.01"}
    assert [r.run_id for r in entry.measured] == ["exact"]
    store = Store(runs, names=["mnist-roar_test"])  # no experiment of this entry's name
    entry = _entry(collect.select(store, "smoke"))
    assert entry.runs == [] and entry.measured == [] and entry.differs == {}
    assert store.queries == [("mnist-roar_test", "tags.`lfxai.profile` = 'smoke'")]
    given = _entry(collect.select(store, "smoke", ["old-lr"]))  # given, though not listed
    assert [r.run_id for r in given.runs] == ["old-lr"] and given.differs == {"lr": "0.01"}
