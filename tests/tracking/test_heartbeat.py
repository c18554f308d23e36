"""A run's last sign of life and the silence after which it is dead, read from its record."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from lfxai.tracking import heartbeat
from lfxai.tracking.heartbeat import (
    STALE_AFTER_S,
    UNCLAIMED_STALE_S,
    Heartbeat,
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


class _Tags:
    """A client that records the tags a heartbeat sets, from whichever thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.flood = threading.Event()  # set once far more beats came than any pace allows
        self.busy = 0  # the thread's next beats that fail, as on a locked store
        self.refused, self.thread_beat = threading.Event(), threading.Event()

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        if threading.current_thread() is not threading.main_thread():
            if self.busy:
                self.busy -= 1
                self.refused.set()
                raise RuntimeError("database is locked")
            self.thread_beat.set()
        self.calls.append((run_id, key, value))
        if len(self.calls) > 20:
            self.flood.set()

    def beats(self) -> int:
        return sum(key == HEARTBEAT_TAG for _, key, _ in self.calls)


@pytest.fixture()
def tags(monkeypatch) -> _Tags:
    client = _Tags()
    monkeypatch.setattr(heartbeat, "MlflowClient", lambda: client)
    monkeypatch.setattr(heartbeat, "utc_now", lambda: START)
    return client


def test_a_heartbeat_declares_its_bound_then_beats_in_a_daemon_thread_until_the_block_ends(tags):
    with Heartbeat("r", every=3600, stale_after=12.5):
        (thread,) = [t for t in threading.enumerate() if t.name == "lfxai-heartbeat-r"]
        assert thread.daemon and thread.is_alive()  # never keeps a finished process alive
        assert tags.calls[:2] == [
            ("r", STALE_AFTER_TAG, "12.5"),
            ("r", HEARTBEAT_TAG, "2030-01-01T12:00:00+00:00"),
        ]  # then the thread's own beats only
        assert {key for _, key, _ in tags.calls[2:]} <= {HEARTBEAT_TAG}
    assert not thread.is_alive()  # woken at the end of the block, not an hour later


def test_a_new_pace_beats_at_once_and_then_waits(tags):
    with Heartbeat("r", every=3600, stale_after=36000) as beating:
        beating.pace(3600, 20)
        assert ("r", STALE_AFTER_TAG, "20") in tags.calls
        # each wake-up (the start, the new pace) gives one beat more, never a stream of them
        assert not tags.flood.wait(0.5), f"{tags.beats()} beats"
    assert 2 <= tags.beats() <= 5


def test_a_beat_the_store_refuses_does_not_stop_the_beats(tags):
    tags.busy = 1  # the thread's first beat (woken at the start) fails
    with Heartbeat("r", every=3600, stale_after=20) as beating:
        assert tags.refused.wait(10)
        beating.pace(3600, 20)  # wakes the thread again
        assert tags.thread_beat.wait(10), "the thread stopped beating after a failed beat"


def test_a_sub_second_heartbeat_is_allowed(monkeypatch):
    monkeypatch.setenv("LFXAI_HEARTBEAT_S", "0.5")
    assert heartbeat.heartbeat_every() == 0.5
