"""What a missing experiment costs (``lfxai.report.costs.measure``), on runs made up here: a
run still going is skipped, an unfinished one is partial, one at other settings than its
scale is not extrapolated, and only models that trained every epoch add epochs."""

from __future__ import annotations

from lfxai.report.collect import Entry, profile_settings
from lfxai.report.costs import duration, measure
from lfxai.tracking import RunRecord


def _record(
    run_id: str,
    status: str = "FINISHED",
    params: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    end_time: int | None = 1_000,
) -> RunRecord:
    return RunRecord(
        run_id, "mnist-disvae", "1", status, 0, end_time, {}, params or {}, metrics or {}
    )


class _Children:
    """The reader's one call ``measure`` makes: the nested runs of a run."""

    def __init__(self, children: dict[str, list[RunRecord]]) -> None:
        self._children = children

    def children(self, run_id: str) -> list[RunRecord]:
        return self._children.get(run_id, [])


def _entry(*measured: RunRecord, experiment: str = "disvae") -> Entry:
    settings = profile_settings("mnist", experiment, "paper")
    return Entry("mnist", experiment, "paper", measured=list(measured), profile_settings=settings)


def test_a_run_still_going_is_skipped_and_an_unfinished_one_is_partial() -> None:
    going = _record("going", status="RUNNING", end_time=None)  # no wall time yet
    killed = _record(
        "killed", "KILLED", {"config.n_epochs": "2"}, {"time/total_seconds": 30.0}
    )  # no device_used logged (an older run)
    after = _record("after", params={"config.n_epochs": "3"}, metrics={"time/total_seconds": 9.0})
    measured, then = measure(_Children({}), _entry(going, killed, after))
    assert then.run is after  # the runs after a partial one are measured too
    assert (measured.run, measured.device, measured.wall) == (killed, "?", 30.0)
    assert measured.differs == {"n_epochs": "2"}
    assert (measured.estimate, measured.note) == (None, "KILLED: partial")


def test_a_run_that_differs_beyond_its_scale_is_measured_but_not_extrapolated() -> None:
    params = {"config.n_epochs": "2", "config.lr": "0.01", "config.batch_size": "64"}
    params["device_used"] = "cuda"
    other = _record("other", params=params, metrics={"time/total_seconds": 50.0})
    after = _record("after", params={"config.n_epochs": "3"}, metrics={"time/total_seconds": 9.0})
    measured, then = measure(_Children({}), _entry(other, after))
    assert then.run is after
    assert (measured.run, measured.device, measured.wall) == (other, "cuda", 50.0)
    assert measured.differs == {"n_epochs": "2", "lr": "0.01", "batch_size": "64"}
    assert measured.estimate is None  # the epochs alone would be extrapolated
    assert measured.note == "not extrapolated: differs in batch_size, lr"


def test_only_models_that_trained_every_epoch_add_the_profiles_other_epochs() -> None:
    params = {"config.n_epochs": "2", "config.n_runs": "2", "device_used": "cpu"}
    parent = _record("parent", params=params, metrics={"time/total_seconds": 150.0})
    children = [  # 40 s + 20 s * 3 = 100 s of models
        _record("full", metrics={"time/total_seconds": 40.0, "fit/epochs": 2.0, **_per(10.0)}),
        _record("early", metrics={"time/total_seconds": 20.0, "fit/epochs": 1.0, **_per(10.0)}),
        _record("untimed", metrics={"time/total_seconds": 20.0, "fit/epochs": 2.0}),
        _record("untrained", metrics={"time/total_seconds": 20.0, **_per(10.0)}),
        _record("instant", metrics=_total(0.0)),  # a model reused: no time at all
        _record("going", end_time=None),  # no wall time: not one of the models measured
    ]
    (measured,) = measure(_Children({"parent": children}), _entry(parent))
    # 50 s outside the models; the full model's 98 more epochs of 10 s; 5 runs instead of 2
    assert measured.estimate == 50 + (100 + 98 * 10) * 5 / 2
    assert measured.note == "extrapolated from its time per epoch and its 5 nested runs"


def test_without_n_runs_the_nested_runs_are_one_runs_models() -> None:
    # roar_test has no n_runs: its retrainings are nested runs of its one run
    parent = _record("parent", params={"config.n_epochs": "10"}, metrics=_total(100.0))
    children = [_record("retraining", metrics=_total(60.0)), _record("reused", metrics=_total(0.0))]
    (measured,) = measure(_Children({"parent": children}), _entry(parent, experiment="roar_test"))
    assert (measured.estimate, measured.note) == (100.0, "measured and its 2 nested runs")


def test_a_run_at_the_profiles_settings_is_its_own_measure() -> None:
    # Its epochs not logged (a run older than the setting): the profile's are assumed.
    params = {"config.n_runs": "5", "device_used": "cpu"}
    run = _record("run", params=params, metrics={"time/total_seconds": 70.0})
    model = _record("model", metrics={"time/total_seconds": 60.0, "fit/epochs": 100.0, **_per(1)})
    (measured,) = measure(_Children({"run": [model]}), _entry(run))
    assert (measured.estimate, measured.differs) == (70.0, {})
    assert measured.note == "measured and its 1 nested runs"


def test_durations_read_as_hours_minutes_or_seconds() -> None:
    assert [duration(s) for s in (None, 0.4, 59.6, 60, 3599, 3600, 7322)] == [
        "-",
        "0 s",
        "1 min 00 s",
        "1 min 00 s",
        "59 min 59 s",
        "1 h 00 min",
        "2 h 02 min",
    ]


def _per(seconds: float) -> dict[str, float]:
    return {"time/fit_seconds_per_epoch": seconds}


def _total(seconds: float) -> dict[str, float]:
    return {"time/total_seconds": seconds}


def test_a_model_trained_in_the_run_itself_adds_its_own_missing_epochs() -> None:
    # roar_test's base model trains in its run: 4 of the paper's 10 epochs at 5 s each
    metrics = {"time/total_seconds": 100.0, "fit/epochs": 4.0, **_per(5.0)}
    params = {"config.n_epochs": "4", "device_used": "cpu"}
    run = _record("run", params=params, metrics=metrics)
    children = [_record("retraining", metrics={**_total(30.0), "fit/epochs": 4.0, **_per(2.0)})]
    (measured,) = measure(_Children({"run": children}), _entry(run, experiment="roar_test"))
    assert (measured.run, measured.device, measured.wall) == (run, "cpu", 100.0)
    # 70 s of its own + 6 epochs x 5 s; the retraining's 30 s + 6 epochs x 2 s
    assert measured.estimate == 70 + 6 * 5 + 30 + 6 * 2
    assert measured.differs == {"n_epochs": "4"}


def test_without_epochs_in_the_profile_no_epochs_are_added() -> None:
    run = _record("run", metrics={"time/total_seconds": 80.0, "fit/epochs": 3.0, **_per(5.0)})
    entry = Entry("mnist", "roar_test", "paper", measured=[run], profile_settings={})
    (measured,) = measure(_Children({}), entry)
    assert (measured.estimate, measured.note) == (80.0, "measured")
