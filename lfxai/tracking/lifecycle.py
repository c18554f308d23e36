"""A run's life: opened (or adopted) and ended FINISHED, FAILED or KILLED, beating meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from lfxai.tracking.heartbeat import STALE_BEATS, Heartbeat, heartbeat_every
from lfxai.tracking.stops import Stopped, error_text, killed_when_stopped
from lfxai.tracking.tags import ERROR_TAG, STOPPED_TAG
from lfxai.tracking.tracker import ResumedTracker, Tracker


@contextmanager
def tracked_run(run_name: str, run_id: str | None = None) -> Iterator[Tracker]:
    """Opens (or, under ``mlflow run``, adopts) a run for the block.

    The run ends FAILED if the body raises, KILLED if a stop (:class:`Stopped`,
    ``KeyboardInterrupt``) interrupts it. While the block runs, a :class:`Heartbeat`
    (``tracker.heartbeat``) refreshes the run's heartbeat tag, so that a run left RUNNING by a
    dead process can be told from a live one (``check_resumable``, ``end_stale_runs``).

    Args:
        run_name: name shown in the MLflow UI.
        run_id: continue this run instead (resume; check it first with
            ``check_resumable``): its earlier outcome tags are removed and the params
            it has keep their values. Otherwise ``MLFLOW_RUN_ID`` set by ``mlflow run`` is
            adopted, or a new run is created.
    """
    every = heartbeat_every()
    with mlflow.start_run(run_id=run_id, run_name=run_name) as run:
        tracker = (Tracker if run_id is None else ResumedTracker)(run.info.run_id)
        tracker.set_name(run_name)
        if run_id is not None:
            tracker.delete_tags(ERROR_TAG, STOPPED_TAG)
        tracker.heartbeat = Heartbeat(tracker.run_id, every, STALE_BEATS * every)
        with tracker.heartbeat, killed_when_stopped(tracker):
            try:
                yield tracker
            except (Stopped, KeyboardInterrupt):
                raise
            except BaseException as error:
                tracker.set_tags({ERROR_TAG: error_text(error)})
                raise


def terminate_run(
    run_id: str,
    status: str,
    tags: dict[str, Any] | None = None,
    end_time: datetime | None = None,
) -> None:
    """Ends a RUNNING run that is not the active one: ``tags``, then ``status``.

    A run that has ended already is left as it is. ``end_time`` (default: now) dates the
    end, e.g. a dead process's last sign of life rather than the moment it was noticed.
    """
    client = MlflowClient()
    run = client.get_run(run_id)
    if run.info.status == "RUNNING":
        Tracker(run_id).set_tags(tags or {})
        end_ms = None
        if end_time is not None:  # never before the run's own start
            end_ms = max(int(end_time.timestamp() * 1000), run.info.start_time or 0)
        client.set_terminated(run_id, status, end_time=end_ms)
