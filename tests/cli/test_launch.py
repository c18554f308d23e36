"""lfxai.cli.launch with stand-ins: -P parsing, the stop handler, exit codes, the runs a
command ends, and the pieces every command shares (is_true, quiet, placed_run)."""

from __future__ import annotations

import ctypes
import logging
import signal
import sys
import threading
from contextlib import contextmanager

import pytest

from lfxai.cli import launch
from lfxai.config import ConfigError
from lfxai.tracking import STOPPED_TAG, Stopped

# --------------------------------------------------------------------------- parse_overrides


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], {}),
        (["--k", "v", "--k2=v2"], {"k": "v", "k2": "v2"}),
        (["--n_epochs", "3"], {"n_epochs": "3"}),
        (["--lr", "-1"], {"lr": "-1"}),  # one dash: a value, not a key
        (["--a=b=c"], {"a": "b=c"}),  # only the first '=' splits
        (["--empty="], {"empty": ""}),
        (["--k", "1", "--k", "2"], {"k": "2"}),  # the last one wins
        (["--note", "two words"], {"note": "two words"}),
    ],
)
def test_overrides_are_key_value_pairs(extra, expected):
    assert launch.parse_overrides(extra) == expected


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["value"], "unexpected argument 'value'; expected --key value pairs"),
        (["--k", "v", "stray"], "unexpected argument 'stray'; expected --key value pairs"),
        (["-k", "v"], "unexpected argument '-k'; expected --key value pairs"),
        (["--n_epochs"], "parameter --n_epochs has no value"),
        (["--a", "--b", "1"], "parameter --a has no value"),
        (["--a", "1", "--b"], "parameter --b has no value"),
    ],
)
def test_bad_overrides_are_refused_naming_the_token(extra, message):
    with pytest.raises(ConfigError) as error:
        launch.parse_overrides(extra)
    assert str(error.value) == message


# --------------------------------------------------------------------------- is_true / quiet


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "True", "yes", "YES", "on", "On", " on "])
def test_true_flags(value):
    assert launch.is_true(value) is True


@pytest.mark.parametrize("value", ["", "0", "false", "no", "off", "y", "t", "2", "truee"])
def test_other_flags_are_false(value):
    assert launch.is_true(value) is False


def test_quiet_shows_warnings_only_inside_and_restores_the_levels():
    one, two = logging.getLogger("lfxai-test.quiet.one"), logging.getLogger("lfxai-test.quiet.two")
    one.setLevel(logging.DEBUG)
    two.setLevel(logging.NOTSET)
    with (
        pytest.raises(RuntimeError),
        launch.quiet(("lfxai-test.quiet.one", "lfxai-test.quiet.two")),
    ):
        assert (one.level, two.level) == (logging.WARNING, logging.WARNING)
        raise RuntimeError("restored all the same")
    assert (one.level, two.level) == (logging.DEBUG, logging.NOTSET)


def test_the_constants_every_command_shares():
    assert (launch.EXIT_OK, launch.EXIT_FAILED, launch.EXIT_BAD_INPUT) == (0, 1, 2)
    assert launch.STOP_SIGNALS == (signal.SIGTERM, signal.SIGINT)
    assert launch.VERBOSE_ENV == "LFXAI_VERBOSE"
    assert launch.CHATTY_LOGGERS == ("mlflow.system_metrics",)


# --------------------------------------------------------------------------- _StopHandler


def test_a_signal_outside_the_store_raises_stopped_once(monkeypatch):
    frames = []
    monkeypatch.setattr(launch, "in_store_call", lambda frame: frames.append(frame) or False)
    handler = launch._StopHandler()  # noqa: SLF001
    assert (handler.signum, handler.raised, handler.pending) == (None, False, False)
    with pytest.raises(Stopped) as stop:
        handler(signal.SIGTERM, None)
    assert stop.value.signum == signal.SIGTERM
    assert frames == [None]
    assert (handler.signum, handler.raised, handler.pending) == (signal.SIGTERM, True, False)
    assert handler(signal.SIGINT, None) is None  # later signals are ignored
    assert handler.signum == signal.SIGTERM


class _Timer:
    made: list[_Timer] = []

    def __init__(self, interval, function):
        self.interval, self.function = interval, function
        self.daemon = False
        self.started = self.cancelled = False
        _Timer.made.append(self)

    def start(self):
        self.started = True

    def cancel(self):
        self.cancelled = True


def test_a_signal_inside_a_store_call_is_retried_later_keeping_the_first_signal(monkeypatch):
    store_frame = object()  # what the signal interrupted: a store call
    monkeypatch.setattr(launch, "in_store_call", lambda frame: frame is store_frame)
    monkeypatch.setattr(launch.threading, "Timer", _Timer)
    _Timer.made = []
    interrupts = []
    monkeypatch.setattr(launch._thread, "interrupt_main", interrupts.append)  # noqa: SLF001
    handler = launch._StopHandler()  # noqa: SLF001
    assert launch._StopHandler.retry_s == 0.05  # noqa: SLF001
    assert handler(signal.SIGINT, store_frame) is None
    assert handler.pending and not handler.raised
    (timer,) = _Timer.made
    assert (timer.interval, timer.daemon, timer.started) == (0.05, True, True)
    handler(
        signal.SIGTERM, store_frame
    )  # a later signal while a retry is on its way: no second one
    assert len(_Timer.made) == 1 and handler.signum == signal.SIGINT
    timer.function()  # the retry: the first signal again, in the main thread
    assert interrupts == [signal.SIGINT]
    handler(signal.SIGTERM, store_frame)  # still in the store call: a new retry
    assert len(_Timer.made) == 2
    handler.close()
    assert _Timer.made[-1].cancelled
    _Timer.made[-1].function()  # fired as it was cancelled: does nothing
    assert interrupts == [signal.SIGINT]
    handler(signal.SIGTERM, store_frame)  # closed: no retry any more
    assert len(_Timer.made) == 2
    with pytest.raises(Stopped) as stop:
        handler(signal.SIGTERM, None)  # out of the store call: the first signal is raised
    assert stop.value.signum == signal.SIGINT


def test_close_without_a_retry_is_fine():
    handler = launch._StopHandler()  # noqa: SLF001
    handler.close()
    assert not handler.pending


# --------------------------------------------------------------------------- stop_signals


def test_stop_signals_installs_its_handler_and_restores_the_previous_ones(monkeypatch):
    calls = []
    monkeypatch.setattr(launch, "parent_death_signal", lambda s: calls.append(s) or True)
    before = {s: signal.getsignal(s) for s in launch.STOP_SIGNALS}
    with launch.stop_signals(follow_parent=True):
        inside = {s: signal.getsignal(s) for s in launch.STOP_SIGNALS}
        assert isinstance(inside[signal.SIGTERM], launch._StopHandler)  # noqa: SLF001
        assert inside[signal.SIGTERM] is inside[signal.SIGINT]
        assert calls == [signal.SIGTERM]
    assert calls == [signal.SIGTERM, 0]  # no parent death signal after the block
    assert {s: signal.getsignal(s) for s in launch.STOP_SIGNALS} == before


def test_stop_signals_follows_the_parent_only_when_asked_and_possible(monkeypatch):
    calls = []
    monkeypatch.setattr(launch, "parent_death_signal", lambda s: calls.append(s) or False)
    with launch.stop_signals(follow_parent=False):
        pass
    assert calls == []
    with launch.stop_signals(follow_parent=True):
        pass
    assert calls == [signal.SIGTERM]  # not followed (not Linux): nothing to undo


def test_stop_signals_in_another_thread_sets_no_handler(monkeypatch):
    calls, seen = [], []
    monkeypatch.setattr(launch, "parent_death_signal", lambda s: calls.append(s) or True)
    before = signal.getsignal(signal.SIGTERM)

    def body():
        with launch.stop_signals(follow_parent=True):
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [before] and calls == []


# --------------------------------------------------------------------------- parent_death_signal


class _Libc:
    def __init__(self, result):
        self.result, self.calls = result, []

    def prctl(self, *args):
        self.calls.append(args)
        return self.result


def test_parent_death_signal_asks_linux_prctl(monkeypatch):
    libc = _Libc(0)
    made = []
    monkeypatch.setattr(launch.sys, "platform", "linux")
    monkeypatch.setattr(
        launch.ctypes, "CDLL", lambda name, use_errno: made.append((name, use_errno)) or libc
    )
    assert launch.parent_death_signal(signal.SIGTERM) is True
    assert made == [(None, True)]
    assert libc.calls == [(1, int(signal.SIGTERM), 0, 0, 0)]
    assert type(libc.calls[0][1]) is int
    libc.result = -1
    assert launch.parent_death_signal(0) is False
    assert libc.calls[-1] == (1, 0, 0, 0, 0)


def test_parent_death_signal_is_false_off_linux_or_without_prctl(monkeypatch):
    def no_libc(name, use_errno):
        raise OSError("no libc")

    monkeypatch.setattr(launch.ctypes, "CDLL", no_libc)
    monkeypatch.setattr(launch.sys, "platform", "linux")
    assert launch.parent_death_signal(signal.SIGTERM) is False
    monkeypatch.setattr(launch.ctypes, "CDLL", lambda name, use_errno: object())
    assert launch.parent_death_signal(signal.SIGTERM) is False  # AttributeError: no prctl
    libc = _Libc(0)
    monkeypatch.setattr(launch.ctypes, "CDLL", lambda name, use_errno: libc)
    monkeypatch.setattr(launch.sys, "platform", "darwin")
    assert launch.parent_death_signal(signal.SIGTERM) is False
    assert libc.calls == []


# --------------------------------------------------------------------------- launch


class _Recorded:
    """Stand-ins for what launch() wraps the work in, recording how it was called."""

    def __init__(self, monkeypatch):
        self.events: list[object] = []
        self.terminated: list[tuple] = []
        monkeypatch.setattr(launch, "init_store", lambda: self.events.append("init_store"))
        monkeypatch.setattr(launch, "system_metrics", self._metrics)
        monkeypatch.setattr(launch, "stop_signals", self._stop_signals)
        monkeypatch.setattr(launch, "terminate_run", lambda *a: self.terminated.append(a))
        monkeypatch.delenv(launch.VERBOSE_ENV, raising=False)

    @contextmanager
    def _metrics(self):
        self.events.append("metrics on")
        try:
            yield
        finally:
            self.events.append("metrics off")

    @contextmanager
    def _stop_signals(self, follow_parent):
        self.events.append(("stop_signals", follow_parent))
        yield


def test_a_command_that_succeeds_exits_0_inside_its_wrappers(monkeypatch, capsys):
    rec = _Recorded(monkeypatch)
    level = logging.getLogger("mlflow.system_metrics").level
    levels = []

    def work():
        levels.append(logging.getLogger("mlflow.system_metrics").level)
        rec.events.append("work")

    assert launch.launch(work, None) == 0
    assert rec.events == [
        ("stop_signals", False),
        "metrics on",
        "init_store",
        "work",
        "metrics off",
    ]
    assert levels == [logging.WARNING]  # quiet by default
    assert logging.getLogger("mlflow.system_metrics").level == level
    assert capsys.readouterr() == ("", "")


def test_under_mlflow_run_the_command_follows_its_parent_and_can_skip_store_and_metrics(
    monkeypatch,
):
    rec = _Recorded(monkeypatch)
    done = []
    code = launch.launch(
        lambda: done.append(1), "run-1", create_store=False, record_system_metrics=False
    )
    assert code == 0 and done == [1]
    assert rec.events == [("stop_signals", True)]


@pytest.mark.parametrize(
    ("verbose", "env", "quiet"),
    [(True, None, False), (False, "1", True), (None, "true", False), (None, "no", True)],
)
def test_verbose_keeps_mlflows_info_chatter(monkeypatch, verbose, env, quiet):
    _Recorded(monkeypatch)
    if env is not None:
        monkeypatch.setenv(launch.VERBOSE_ENV, env)
    logger = logging.getLogger("mlflow.system_metrics")
    monkeypatch.setattr(logger, "level", logging.INFO)
    levels = []
    assert launch.launch(lambda: levels.append(logger.level), None, verbose=verbose) == 0
    assert levels == [logging.WARNING if quiet else logging.INFO]


def test_bad_input_is_one_redacted_line_and_exit_2(monkeypatch, capsys):
    rec = _Recorded(monkeypatch)

    def work():
        raise ConfigError("storage postgresql://user:secret@host/db is unknown")

    assert launch.launch(work, "run-1", launcher="run-1") == launch.EXIT_BAD_INPUT
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: storage postgresql://user:")
    assert "secret" not in err and err.endswith(" is unknown\n") and err.count("\n") == 1
    assert rec.terminated == []  # the work's own run says why: the launcher is not touched


def test_any_other_failure_is_its_redacted_traceback_and_exit_1(monkeypatch, capsys):
    rec = _Recorded(monkeypatch)

    def work():
        raise RuntimeError("password=hunter2 broke it")

    assert launch.launch(work, None) == launch.EXIT_FAILED
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("Traceback (most recent call last):\n")
    assert "RuntimeError: password=" in err and "hunter2" not in err
    assert err.endswith("\n") and not err.endswith("\n\n")
    assert rec.events[-1] == "metrics off"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_ends_the_launcher_killed_and_exits_128_plus_the_signal(monkeypatch, capsys, signum):
    rec = _Recorded(monkeypatch)

    def work():
        raise Stopped(signum)

    assert launch.launch(work, "run-1", launcher="launcher-1") == 128 + signum
    name = signal.Signals(signum).name
    assert rec.terminated == [
        ("launcher-1", "KILLED", {STOPPED_TAG: f"{name} received: the run was stopped"})
    ]
    err = capsys.readouterr().err
    assert err == f"[lfxai] stopped by {name}: the runs were ended KILLED\n"


def test_a_stop_without_a_launcher_ends_no_other_run(monkeypatch, capsys):
    rec = _Recorded(monkeypatch)

    def work():
        raise Stopped(signal.SIGTERM)

    assert launch.launch(work, None) == 143
    assert rec.terminated == []
    assert capsys.readouterr().err == "[lfxai] stopped by SIGTERM: the runs were ended KILLED\n"


# --------------------------------------------------------------------------- placed_run


class _Tracker:
    def __init__(self):
        self.taken: list[str] = []

    def take_over(self, run_id):
        self.taken.append(run_id)


def _placement(monkeypatch, replaced):
    calls, tracker = [], _Tracker()

    @contextmanager
    def run_location(experiment):
        calls.append(("location", experiment))
        yield replaced
        calls.append("location closed")

    @contextmanager
    def tracked_run(name):
        calls.append(("run", name))
        yield tracker
        calls.append("run closed")

    monkeypatch.setattr(launch, "run_location", run_location)
    monkeypatch.setattr(launch, "tracked_run", tracked_run)
    return calls, tracker


def test_a_placed_run_takes_over_the_run_it_replaced(monkeypatch):
    calls, tracker = _placement(monkeypatch, "pointer-1")
    with launch.placed_run("mnist-roar_test", "quick · roar_test") as got:
        assert got is tracker
    assert tracker.taken == ["pointer-1"]
    assert calls == [
        ("location", "mnist-roar_test"),
        ("run", "quick · roar_test"),
        "run closed",
        "location closed",
    ]


def test_a_placed_run_with_nothing_replaced_takes_nothing_over(monkeypatch):
    calls, tracker = _placement(monkeypatch, None)
    with launch.placed_run(None, "x"):
        pass
    assert tracker.taken == [] and calls[0] == ("location", None)


def test_dead_runs_are_ended_and_each_said(monkeypatch, capsys):
    seen = []
    lines = ["abc 'quick · roar_test' (no heartbeat since 10:00)", "def"]
    monkeypatch.setattr(launch, "end_stale_runs", lambda t, r: seen.append((t, r)) or lines)
    launch.end_dead_runs("tracker", "run-9")
    assert seen == [("tracker", "run-9")]
    assert capsys.readouterr().out == (
        "[lfxai] ended KILLED: run abc 'quick · roar_test' (no heartbeat since 10:00)\n"
        "[lfxai] ended KILLED: run def\n"
    )
    monkeypatch.setattr(launch, "end_stale_runs", lambda t, r: [])
    launch.end_dead_runs("tracker", None)
    assert capsys.readouterr().out == ""


def test_parent_death_is_linux_only_on_this_platform():
    # The real call: True on Linux (prctl exists), False elsewhere; reset to nothing after.
    try:
        assert launch.parent_death_signal(signal.SIGTERM) is sys.platform.startswith("linux")
    finally:
        if sys.platform.startswith("linux"):  # reset without the code under test
            ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)
