"""A run's last sign of life and the silence after which it is dead, read from its record."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from lfxai.tracking.heartbeat import (
    STALE_AFTER_S,
    UNCLAIMED_STALE_S,
    last_sign_of_life,
    seconds_since_alive,
    stale_after,
)
from lfxai.tracking.tags import HEARTBEAT_TAG, STALE_AFTER_TAG

START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
MS = int(START.timestamp() * 1000)


def _run(tags: dict[str, str], end_ms: int | None = None) -> SimpleNamespace:
    """What the functions read of an MLflow ``Run``: its times and tags."""
    info = SimpleNamespace(start_time=MS, end_time=end_ms)
    return SimpleNamespace(info=info, data=SimpleNamespace(tags=tags))


def test_the_last_sign_of_life_is_the_latest_of_start_heartbeat_and_end():
    assert last_sign_of_life(_run({})) == START
    beat = "2030-01-01T12:05:00+00:00"
    assert last_sign_of_life(_run({HEARTBEAT_TAG: beat})) == datetime.fromisoformat(beat)
    assert last_sign_of_life(_run({HEARTBEAT_TAG: beat}, MS + 600_000)).minute == 10
    # A tag that is no time (written by hand, or by another tool) is no sign of life.
    assert last_sign_of_life(_run({HEARTBEAT_TAG: "soon"}, MS + 60_000)).minute == 1
    now = datetime(2030, 1, 1, 12, 7, 30, tzinfo=UTC)
    assert seconds_since_alive(_run({HEARTBEAT_TAG: beat}), now) == 150.0


def test_a_run_is_dead_after_its_own_bound_else_a_default_by_whether_it_beat():
    assert stale_after(_run({STALE_AFTER_TAG: "12.5"})) == 12.5
    assert stale_after(_run({})) == UNCLAIMED_STALE_S
    assert stale_after(_run({HEARTBEAT_TAG: "x"})) == STALE_AFTER_S
    assert stale_after(_run({STALE_AFTER_TAG: "never", HEARTBEAT_TAG: "x"})) == STALE_AFTER_S
    assert STALE_AFTER_S < UNCLAIMED_STALE_S
