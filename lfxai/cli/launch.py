"""How every command runs: its arguments, stop signals, the store, its run and exit code.

Lifecycle: SIGTERM and SIGINT end the run and its open nested runs KILLED (tag
``lfxai.stopped``; a store write under way finishes first) and exit 128 + the signal; under
``mlflow run`` the process also stops when ``mlflow run`` dies (Linux). Bad input ends with
one line (``error: ...``) and exit 2, any other failure with its traceback and exit 1; both
are printed redacted (:func:`lfxai.redact.redact`).
"""

from __future__ import annotations

import _thread
import ctypes
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from types import FrameType

from lfxai.config import ConfigError
from lfxai.redact import redact
from lfxai.tracking import (
    STOPPED_TAG,
    Stopped,
    Tracker,
    end_stale_runs,
    in_store_call,
    init_store,
    run_location,
    system_metrics,
    terminate_run,
    tracked_run,
)

VERBOSE_ENV = "LFXAI_VERBOSE"  # 1 / true: MLflow's INFO chatter too (e.g. system metrics)
# Loggers whose INFO lines repeat per run and say nothing a user acts on: the system metrics
# monitor's start / stop / "skip GPU metrics" (three to four lines per nested run).
CHATTY_LOGGERS = ("mlflow.system_metrics",)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def parse_overrides(extra: list[str]) -> dict[str, str]:
    """``['--k', 'v', '--k2=v2']`` -> ``{'k': 'v', 'k2': 'v2'}`` (how ``-P`` values arrive)."""
    out: dict[str, str] = {}
    i = 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--"):
            raise ConfigError(f"unexpected argument {token!r}; expected --key value pairs")
        key, sep, value = token[2:].partition("=")
        if not sep:
            if i + 1 >= len(extra) or extra[i + 1].startswith("--"):
                raise ConfigError(f"parameter --{key} has no value")
            value = extra[i + 1]
            i += 1
        out[key] = value
        i += 1
    return out


class _StopHandler:
    """The handler of :func:`stop_signals`: raises :class:`Stopped` once, outside store calls.

    A signal that interrupts a call into the store (:func:`in_store_call`) is handled again
    every :attr:`retry_s` seconds until the call has returned: a call that retries (a
    tracking server that does not answer) delays the stop by as long; SIGKILL does not wait.
    A later signal counts as a retry of the first (whose name the stop keeps): Ctrl-C on
    ``mlflow run`` sends SIGINT and then, as ``mlflow run`` dies, SIGTERM.
    """

    retry_s = 0.05

    def __init__(self) -> None:
        self.signum: int | None = None  # the first signal received
        self.raised = False
        self._closed = False
        self._scheduled = False  # a retry is on its way
        self._lock = threading.Lock()
        self._retry: threading.Timer | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.raised:
            return  # later signals: the runs are being ended KILLED
        if self.signum is None:
            self.signum = signum
        if in_store_call(frame):
            self._retry_later()
            return
        self.raised = True
        raise Stopped(self.signum)

    @property
    def pending(self) -> bool:
        """A signal came and has not been raised yet."""
        return self.signum is not None and not self.raised

    def _retry_later(self) -> None:
        with self._lock:
            if self._scheduled or self._closed:
                return  # a later signal while a retry is on its way
            self._scheduled = True
        self._retry = threading.Timer(self.retry_s, self._handle_again)
        self._retry.daemon = True
        self._retry.start()

    def _handle_again(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._scheduled = False
            # Runs this handler in the main thread as a signal would, but sends no real
            # signal: nothing can reach a default handler that kills the process.
            _thread.interrupt_main(self.signum)

    def close(self) -> None:
        """No retry after this (one already made is handled by this handler first)."""
        with self._lock:
            self._closed = True
        if self._retry is not None:
            self._retry.cancel()


@contextmanager
def stop_signals(follow_parent: bool) -> Iterator[None]:
    """SIGTERM and SIGINT raise :class:`Stopped` in the main thread while the block runs.

    Only the first signal raises: later ones are ignored so that the runs can be ended
    KILLED. A signal during a call into the store raises when the call has returned, or at
    the end of the block (:class:`_StopHandler`). ``follow_parent`` (under ``mlflow run``,
    which does not forward SIGTERM to its child; a sweep's worker process): this process
    gets SIGTERM when its parent dies.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    handler = _StopHandler()
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    following = follow_parent and parent_death_signal(signal.SIGTERM)
    try:
        yield
    finally:
        try:
            handler.close()
        finally:
            if following:
                parent_death_signal(0)
            for sig, restored in previous.items():
                signal.signal(sig, restored)
    if handler.pending:  # it came during the block's last store call
        handler.raised = True
        raise Stopped(handler.signum)


def parent_death_signal(signum: int) -> bool:
    """Asks Linux to send ``signum`` (0: nothing) to this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return False
    pr_set_pdeathsig = 1  # from <linux/prctl.h>
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(pr_set_pdeathsig, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def launch(
    work: Callable[[], None],
    launched_run: str | None,
    launcher: str | None = None,
    create_store: bool = True,
    record_system_metrics: bool = True,
    verbose: bool | None = None,
) -> int:
    """Runs a command's ``work`` and returns the process exit code.

    Args:
        work: the command; its own runs end FAILED or KILLED as it raises.
        launched_run: the run ``mlflow run`` made for this process (``MLFLOW_RUN_ID``):
            this process then also stops when ``mlflow run`` dies.
        launcher: a run to end KILLED when a stop comes before ``work`` adopted it.
        create_store: create or migrate a SQLite store first (:func:`init_store`).
        record_system_metrics: runs started by ``work`` log ``system/*`` metrics.
        verbose: keep MLflow's INFO chatter (:data:`CHATTY_LOGGERS`); None: as
            ``LFXAI_VERBOSE`` says (default off).
    """
    metrics = system_metrics() if record_system_metrics else nullcontext()
    if verbose is None:
        verbose = is_true(os.environ.get(VERBOSE_ENV, ""))
    try:
        with (
            stop_signals(follow_parent=launched_run is not None),
            metrics,
            nullcontext() if verbose else quiet(CHATTY_LOGGERS),
        ):
            if create_store:
                init_store()  # a new SQLite store: created once, under a lock
            work()
    except ConfigError as error:
        print(f"error: {redact(str(error))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Stopped as stop:
        if launcher:  # ended already when adopted: a no-op then
            terminate_run(launcher, "KILLED", {STOPPED_TAG: stop.reason})
        print(f"[lfxai] {stop}: the runs were ended KILLED", file=sys.stderr)
        return stop.exit_code
    except Exception:
        print(redact(traceback.format_exc()), end="", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def is_true(value: str) -> bool:
    """A command-line or environment flag: 1 / true / yes / on (any case)."""
    return value.strip().lower() in ("1", "true", "yes", "on")


@contextmanager
def quiet(loggers: tuple[str, ...]) -> Iterator[None]:
    """Inside, ``loggers`` print warnings and errors only; their levels are restored after."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@contextmanager
def placed_run(experiment: str | None, name: str) -> Iterator[Tracker]:
    """A run in experiment ``experiment`` (:func:`run_location`), FAILED if the block raises.

    The run `mlflow run` made in ``Default`` is left there as a pointer.

    Args:
        experiment: where the run goes unless the user chose (None: where MLflow puts it).
        name: its name until the command names it.
    """
    with run_location(experiment) as replaced, tracked_run(name) as tracker:
        if replaced:
            tracker.take_over(replaced)
        yield tracker


def end_dead_runs(tracker: Tracker, launched_run: str | None) -> None:
    """Ends KILLED (and names) the runs dead processes left RUNNING where this run goes."""
    for line in end_stale_runs(tracker, launched_run):
        print(f"[lfxai] ended KILLED: run {line}")
