"""How a run ends when it does not finish: a stop signal (KILLED) or an error (FAILED)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Protocol

import mlflow

from lfxai.redact import redact
from lfxai.tracking.tags import STOPPED_TAG


class Stopped(BaseException):
    """A stop signal (SIGTERM, SIGINT) arrived: the open runs end KILLED, the process exits.

    A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except Exception`` of the
    experiments swallows it.

    Args:
        signum: the signal received.
    """

    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        self.signum = int(signum)
        self.exit_code = 128 + signum  # what a shell reports for a process killed by it
        self.reason = f"{self.signal_name} received: the run was stopped"  # STOPPED_TAG
        super().__init__(f"stopped by {self.signal_name}")


# A stop raised inside these leaves a store transaction open, its connection held by the
# stop's traceback, and the SQLite store locked: ending the runs KILLED then waits for the
# lock and fails (the run stays RUNNING). Stops wait until the call has returned.
STORE_MODULES = ("sqlalchemy", "mlflow.store")


def in_store_call(frame: FrameType | None) -> bool:
    """Whether ``frame`` (what a signal interrupted) or a caller of it is the store client's."""
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if any(module == name or module.startswith(name + ".") for name in STORE_MODULES):
            return True
        frame = frame.f_back
    return False


def stop_reason(stop: BaseException) -> str:
    """What :data:`STOPPED_TAG` says about a stop (a signal, or Ctrl-C in this process)."""
    return stop.reason if isinstance(stop, Stopped) else "KeyboardInterrupt: the run was stopped"


def error_text(error: BaseException) -> str:
    """What ``lfxai.error`` says about ``error``: its type and message, redacted, cut short."""
    return redact(f"{type(error).__name__}: {error}")[:5000]


class _TaggableRun(Protocol):
    run_id: str

    def set_tags(self, tags: dict[str, object]) -> None: ...


@contextmanager
def killed_when_stopped(run: _TaggableRun) -> Iterator[None]:
    """Ends the active run (``run``'s) KILLED, reason tagged, if a stop interrupts the block."""
    try:
        yield
    except (Stopped, KeyboardInterrupt) as stop:
        with contextlib.suppress(Exception):  # the store may be what failed
            run.set_tags({STOPPED_TAG: stop_reason(stop)})
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run.run_id:
            mlflow.end_run("KILLED")
        raise
