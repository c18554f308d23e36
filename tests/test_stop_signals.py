"""Stop signals: Stopped is raised once, never inside a call into the store (a store write
cut in two keeps the SQLite store locked, and the run could not be ended KILLED)."""

from __future__ import annotations

import inspect
import signal
import threading
import time
from collections.abc import Callable

import mlflow
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from lfxai.cli.launch import stop_signals
from lfxai.tracking import STOPPED_TAG, Stopped, Tracker, in_store_call
from lfxai.tracking.stops import killed_when_stopped
from tests.helpers import deliverable_stop_signals

WAIT_S = 10.0  # a deferred stop is raised within this (it is retried every 0.05 s)


def _in_module(module: str | None, body):
    """``body`` called from a function that belongs to ``module`` (as its frames say; None:
    code without a module name, as ``exec`` may run it)."""
    namespace = {"body": body} | ({} if module is None else {"__name__": module})
    exec("def call():\n    return body()\n", namespace)
    return namespace["call"]


def _idle_until_stopped() -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        time.sleep(0.01)
    raise AssertionError("the stop was never raised")


@pytest.mark.parametrize(
    ("signum", "name"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")]
)
def test_a_stop_names_its_signal_and_the_shell_s_exit_code(signum, name):
    stop = Stopped(signum)
    assert (str(stop), stop.signal_name, stop.signum) == (f"stopped by {name}", name, int(signum))
    assert stop.exit_code == 128 + int(signum)
    assert stop.reason == f"{name} received: the run was stopped"


@pytest.mark.parametrize(
    ("module", "inside"),
    [
        ("sqlalchemy.engine.base", True),
        ("sqlalchemy", True),
        ("mlflow.store.tracking.sqlalchemy_store", True),
        ("mlflow.tracking.fluent", False),  # above the store: nothing begun yet
        ("sqlalchemyx", False),
        ("lfxai.tracking.tracker", False),
        (None, False),
    ],
)
def test_a_frame_is_in_a_store_call_when_it_or_a_caller_is_the_store_clients(module, inside):
    seen = []
    _in_module(module, lambda: seen.append(in_store_call(inspect.currentframe())))()
    assert seen == [inside]


def test_a_stop_during_a_store_call_is_raised_once_the_call_has_returned() -> None:
    log: list[str] = []

    def write() -> None:
        signal.raise_signal(signal.SIGTERM)  # Python's handler runs before this returns
        time.sleep(0.2)  # several retries fall inside the call
        log.append("write returned")

    with deliverable_stop_signals(), pytest.raises(Stopped) as stop, stop_signals(False):
        _in_module("sqlalchemy.engine.base", write)()
        log.append("after the write")
        _idle_until_stopped()
    assert stop.value.signum == signal.SIGTERM
    assert log == ["write returned", "after the write"]


def test_a_stop_during_the_blocks_last_store_call_is_raised_at_its_end() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    log: list[str] = []

    def write() -> None:
        signal.raise_signal(signal.SIGINT)
        log.append("write returned")

    with deliverable_stop_signals(), pytest.raises(Stopped) as stop, stop_signals(False):
        _in_module("mlflow.store.tracking.sqlalchemy_store", write)()
    assert stop.value.signum == signal.SIGINT
    assert log == ["write returned"]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    time.sleep(0.2)  # no retry reaches the handlers restored (SIGINT's raises here)


def test_a_later_signal_during_a_deferred_stop_raises_the_first_one_once() -> None:
    def write() -> None:
        signal.raise_signal(signal.SIGINT)  # Ctrl-C on `mlflow run`, then its death:
        signal.raise_signal(signal.SIGTERM)
        time.sleep(0.2)

    with deliverable_stop_signals(), pytest.raises(Stopped) as stop, stop_signals(False):
        _in_module("sqlalchemy.orm.session", write)()
        _idle_until_stopped()
    assert stop.value.signum == signal.SIGINT


class _HeldTimer:
    """A retry's timer that fires only when the test says (``fire``)."""

    made: list[_HeldTimer]

    def __init__(self, interval: float, function: Callable[[], None]) -> None:
        self.interval, self.function, self.daemon = interval, function, False
        self.made.append(self)

    def start(self) -> None:
        pass

    def cancel(self) -> None:
        pass  # too late: it fired as the block ended (the race close() must win)

    def fire(self) -> None:
        self.function()


@pytest.fixture
def held_timers(monkeypatch) -> list[_HeldTimer]:
    made: list[_HeldTimer] = []
    monkeypatch.setattr(_HeldTimer, "made", made, raising=False)
    monkeypatch.setattr(threading, "Timer", _HeldTimer)
    return made


def test_one_retry_at_a_time_on_a_daemon_thread(held_timers) -> None:
    def write() -> None:
        for _ in range(3):  # signals while the first one's retry is on its way
            signal.raise_signal(signal.SIGTERM)

    with deliverable_stop_signals(), pytest.raises(Stopped), stop_signals(False):
        _in_module("sqlalchemy.orm.session", write)()
        assert len(held_timers) == 1
        assert held_timers[0].daemon  # it never keeps the process alive
        held_timers[0].fire()  # outside the store now: the retry raises
        _idle_until_stopped()


def test_a_retry_that_fires_after_the_block_reaches_no_handler(held_timers) -> None:
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        with deliverable_stop_signals(), pytest.raises(Stopped), stop_signals(False):
            _in_module("sqlalchemy.orm.session", lambda: signal.raise_signal(signal.SIGINT))()
        (timer,) = held_timers
        timer.fire()  # the handler restored is the one above
        time.sleep(0.1)  # Python runs a pending handler at the next bytecodes
    finally:
        signal.signal(signal.SIGINT, previous)
    assert received == []


def test_a_stop_outside_the_store_is_raised_at_once() -> None:
    log: list[str] = []
    with deliverable_stop_signals(), pytest.raises(Stopped), stop_signals(False):
        signal.raise_signal(signal.SIGTERM)
        log.append("went on")
    assert log == []


def test_a_stop_inside_a_metric_write_ends_the_run_killed_with_the_metric(mlflow_store):
    """What CI saw: a stop raised inside a metric write, between the row's insert and the
    read of the metric's latest value (whose open cursor the stop's traceback keeps), left
    the store locked: ending the run KILLED waited 20 s for the lock, failed, and the run
    stayed RUNNING (this test fails so on the old handler, in 46 s)."""
    fired: list[str] = []

    def stop_in_the_write(cursor, statement, parameters, _context) -> bool:
        cursor.execute(statement, parameters)  # what SQLAlchemy would have done
        # The metric's row is inserted (autoflush), then its latest value is read: the
        # write transaction is open, the store locked (where a stop came in CI).
        if not fired and statement.lstrip().startswith("SELECT latest_metrics"):
            fired.append(statement)
            signal.raise_signal(signal.SIGTERM)
        return True  # executed here

    run = mlflow.start_run()
    tracker = Tracker(run.info.run_id)
    mlflow.log_metric("loss", 2.0, step=0)  # the read below finds a row: it stays open
    event.listen(Engine, "do_execute", stop_in_the_write)
    try:
        with (
            deliverable_stop_signals(),
            pytest.raises(Stopped),
            stop_signals(follow_parent=False),
            killed_when_stopped(tracker),
        ):
            mlflow.log_metric("loss", 1.0, step=1)
            _idle_until_stopped()
    finally:
        event.remove(Engine, "do_execute", stop_in_the_write)
    assert fired
    ended = mlflow.MlflowClient().get_run(run.info.run_id)
    assert ended.info.status == "KILLED"
    assert ended.data.tags[STOPPED_TAG].startswith("SIGTERM")
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 2.0), (1, 1.0)]
