"""How a run ends when it does not finish: a stop signal (KILLED) or an error (FAILED)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from contextlib import contextmanager
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
