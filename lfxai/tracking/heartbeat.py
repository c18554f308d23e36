"""Whether a run's process is alive: heartbeats, and the silence after which it is dead.

A working top-level run refreshes :data:`~lfxai.tracking.tags.HEARTBEAT_TAG` every
:data:`HEARTBEAT_S` seconds (``LFXAI_HEARTBEAT_S`` overrides) and declares in
:data:`~lfxai.tracking.tags.STALE_AFTER_TAG` how long a silence means its process is dead
(SIGKILLed, machine lost): :data:`STALE_BEATS` beats, 300 s by default; a sweep declares its
own grace period.
"""

from __future__ import annotations

import contextlib
import os
import threading
from datetime import UTC, datetime

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from lfxai.config import ConfigError
from lfxai.tracking.tags import HEARTBEAT_TAG, STALE_AFTER_TAG

HEARTBEAT_ENV = "LFXAI_HEARTBEAT_S"
HEARTBEAT_S = 30.0
STALE_BEATS = 10
STALE_AFTER_S = STALE_BEATS * HEARTBEAT_S  # for a run that declares no bound of its own
# A `mlflow run` run our code never reached (no heartbeat: its launcher died first, or is
# still building a conda environment) is taken for dead this long after its start.
UNCLAIMED_STALE_S = 3600.0


def utc_now() -> datetime:
    """The time heartbeats are stamped with and compared to (tests replace it)."""
    return datetime.now(UTC)


def heartbeat_every() -> float:
    """Seconds between a run's heartbeats: ``LFXAI_HEARTBEAT_S``, else :data:`HEARTBEAT_S`."""
    raw = os.environ.get(HEARTBEAT_ENV, "").strip()
    try:
        every = float(raw) if raw else HEARTBEAT_S
    except ValueError:
        every = float("nan")
    if not every > 0:
        raise ConfigError(f"{HEARTBEAT_ENV} must be a positive number of seconds, got {raw!r}")
    return every


class Heartbeat:
    """Sets a run's heartbeat tag now and then every ``every`` seconds (a daemon thread).

    It first declares in :data:`STALE_AFTER_TAG` the silence that means the run is dead. A
    context manager: the beats stop when the block ends.

    Args:
        run_id: the beating run.
        every: seconds between beats.
        stale_after: seconds without a beat after which any process may take it for dead.
    """

    def __init__(self, run_id: str, every: float, stale_after: float) -> None:
        self.run_id = run_id
        self.every = every
        self.client = MlflowClient()
        self._done = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.pace(every, stale_after)

    def beat(self) -> None:
        """Stamps the run with the current time."""
        self.client.set_tag(self.run_id, HEARTBEAT_TAG, utc_now().isoformat(timespec="seconds"))

    def pace(self, every: float, stale_after: float) -> None:
        """Beats every ``every`` s from now on; the run is dead after ``stale_after`` s."""
        self.every = every
        self.client.set_tag(self.run_id, STALE_AFTER_TAG, f"{stale_after:g}")
        self.beat()
        self._wake.set()  # the thread restarts its wait with the new interval

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.every)
            self._wake.clear()
            if self._done.is_set():
                return
            with contextlib.suppress(Exception):  # a busy store: the next beat will do
                self.beat()

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(
            target=self._loop, name=f"lfxai-heartbeat-{self.run_id}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def last_sign_of_life(run: Run) -> datetime:
    """The latest of a run's start, heartbeat and end."""
    stamps = [run.info.start_time, run.info.end_time]
    last = max(datetime.fromtimestamp(ms / 1000, UTC) for ms in stamps if ms)
    beat = run.data.tags.get(HEARTBEAT_TAG)
    if beat:
        with contextlib.suppress(ValueError):
            last = max(last, datetime.fromisoformat(beat))
    return last


def seconds_since_alive(run: Run, now: datetime | None = None) -> float:
    """Seconds since a run's last sign of life: its heartbeat, start or end."""
    return ((now or utc_now()) - last_sign_of_life(run)).total_seconds()


def stale_after(run: Run) -> float:
    """The silence after which ``run`` is taken for dead.

    Its own :data:`STALE_AFTER_TAG`, else :data:`STALE_AFTER_S` for a run that beat and
    :data:`UNCLAIMED_STALE_S` for one that never did (a `mlflow run` run our code never
    reached).
    """
    tags = run.data.tags
    with contextlib.suppress(KeyError, ValueError):
        return float(tags[STALE_AFTER_TAG])
    return STALE_AFTER_S if HEARTBEAT_TAG in tags else UNCLAIMED_STALE_S
