"""CpuWorkers: jobs at once on threads sharing torch's, drawn lazily, errors and stops passed on."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import pytest
import torch

from lfxai import concurrency
from lfxai.cli.launch import stop_signals
from lfxai.concurrency import CpuWorkers
from lfxai.tracking import Stopped
from tests.helpers import deliverable_stop_signals

WAIT = 30.0  # seconds a job waits for another before the test fails (never hangs)


def _drawn(jobs: list[Callable[[], object]], log: list[str]) -> Iterator[Callable[[], object]]:
    """``jobs`` one by one, noting in ``log`` when each is drawn."""
    for i, job in enumerate(jobs):
        log.append(f"draw {i}")
        yield job


def test_one_worker_runs_each_job_in_the_callers_thread_in_order() -> None:
    threads: list[threading.Thread] = []
    log: list[str] = []

    def job(i: int) -> Callable[[], int]:
        def run() -> int:
            threads.append(threading.current_thread())
            log.append(f"run {i}")
            return i * 10

        return run

    assert CpuWorkers(1).run(_drawn([job(0), job(1), job(2)], log)) == [0, 10, 20]
    assert threads == [threading.main_thread()] * 3
    assert log == ["draw 0", "run 0", "draw 1", "run 1", "draw 2", "run 2"]


def test_two_workers_run_jobs_at_once_sharing_torchs_threads() -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        both = threading.Barrier(2, timeout=WAIT)  # breaks (an error) unless both run at once
        seen: list[tuple[str, int]] = []

        def job(value: str) -> Callable[[], str]:
            def run() -> str:
                both.wait()
                seen.append((threading.current_thread().name, torch.get_num_threads()))
                return value

            return run

        assert CpuWorkers(2).run([job("a"), job("b")]) == ["a", "b"]
        assert sorted(n for _, n in seen) == [2, 2]  # 4 threads shared by 2 workers
        assert all(name.startswith("lfxai-worker") for name, _ in seen)
        assert torch.get_num_threads() == 4  # restored
        assert CpuWorkers(3).run([lambda: torch.get_num_threads()]) == [1]  # at least one
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(previous)


def test_results_come_in_the_order_drawn_and_jobs_are_drawn_as_workers_free_up() -> None:
    log: list[str] = []
    release = [threading.Event() for _ in range(4)]

    def job(i: int) -> Callable[[], int]:
        def run() -> int:
            assert release[i].wait(WAIT)
            log.append(f"done {i}")
            return i

        return run

    def conductor() -> None:  # finishes the jobs in the order 1, 0, 3, 2
        for i in (1, 0, 3, 2):
            deadline = time.monotonic() + WAIT
            while f"draw {i}" not in log and time.monotonic() < deadline:
                time.sleep(0.01)
            release[i].set()
            while f"done {i}" not in log and time.monotonic() < deadline:
                time.sleep(0.01)

    helper = threading.Thread(target=conductor)
    helper.start()
    results = CpuWorkers(2).run(_drawn([job(i) for i in range(4)], log))
    helper.join()
    assert results == [0, 1, 2, 3]
    # Never more than two drawn and unfinished: job 2 is drawn once job 1 is done.
    assert log.index("draw 2") > log.index("done 1")
    assert log.index("draw 3") > log.index("done 0")


def test_after_an_error_nothing_more_is_drawn_the_running_job_finishes_and_it_is_raised() -> None:
    log: list[str] = []
    failed = threading.Event()

    def broken() -> None:
        failed.set()
        raise ValueError("job 0 broke")

    def slow() -> str:
        assert failed.wait(WAIT)
        time.sleep(0.2)  # still running when the error is seen
        log.append("slow finished")
        return "kept"

    jobs = [broken, slow, lambda: log.append("never")]
    with pytest.raises(ValueError, match="job 0 broke"):
        CpuWorkers(2).run(_drawn(jobs, log))
    assert log == ["draw 0", "draw 1", "slow finished"]


def test_of_two_errors_the_first_job_s_is_raised() -> None:
    failed = threading.Event()

    def first() -> None:
        failed.set()
        raise ValueError("first")

    def second() -> None:
        assert failed.wait(WAIT)
        time.sleep(0.5)  # the first job's error is in its future long before this one's
        raise ValueError("second")

    with pytest.raises(ValueError, match="first"):
        CpuWorkers(2).run([first, second])


def test_a_stop_point_outside_the_jobs_does_nothing() -> None:
    for n in (1, 2):  # the caller's thread; with one worker the jobs run there too
        workers = CpuWorkers(n)
        workers.stop_point()
        assert workers.run([lambda w=workers: w.stop_point() or "went on"]) == ["went on"]


def _until_stopped(
    workers: CpuWorkers,
    log: list[str],
    name: str,
    started: threading.Barrier,
    linger: float = 0.0,
) -> Callable[[], None]:
    """A job that, once the others have started, calls ``stop_point`` until it raises;
    it then takes ``linger`` seconds to end (as a run's logging does)."""

    def run() -> None:
        started.wait()
        deadline = time.monotonic() + WAIT
        try:
            while time.monotonic() < deadline:
                workers.stop_point()
                time.sleep(0.01)
        except BaseException as stop:
            time.sleep(linger)
            log.append(f"{name}: {type(stop).__name__} {stop}")
            raise
        log.append(f"{name}: never stopped")

    return run


def test_a_stop_signal_reaches_every_running_job_then_the_caller() -> None:
    workers, log = CpuWorkers(2), []
    started = threading.Barrier(2, timeout=WAIT)
    # It ends well after the other: the caller waits for both.
    waiting = _until_stopped(workers, log, "waiting", started, linger=0.3)

    def killer() -> None:
        started.wait()  # both jobs are running
        # To this worker thread, as a signal from outside may be: the caller, waiting,
        # must still run Python's handler (in the main thread) soon.
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        _until_stopped(workers, log, "killer", threading.Barrier(1))()

    with deliverable_stop_signals(), stop_signals(False), pytest.raises(Stopped) as stop:
        workers.run(_drawn([waiting, killer, lambda: log.append("never")], log))
    assert stop.value.signum == signal.SIGTERM
    assert sorted(log[2:]) == [
        "killer: Stopped stopped by SIGTERM",
        "waiting: Stopped stopped by SIGTERM",
    ]
    assert log[:2] == ["draw 0", "draw 1"]  # nothing drawn after the stop
    with pytest.raises(Stopped):  # the workers stay stopped: the process is ending
        workers.stop_point()


def test_ctrl_c_in_the_caller_reaches_the_running_jobs_as_keyboard_interrupt() -> None:
    workers, log = CpuWorkers(2), []
    started = threading.Barrier(2, timeout=WAIT)

    def interrupter() -> None:
        started.wait()  # both jobs are running
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # Ctrl-C, here too
        _until_stopped(workers, log, "interrupter", threading.Barrier(1))()

    # Python's own Ctrl-C handler (a test runner's worker may have replaced it).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with deliverable_stop_signals(), pytest.raises(KeyboardInterrupt):
            workers.run([interrupter, _until_stopped(workers, log, "other", started)])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sorted(log) == ["interrupter: KeyboardInterrupt ", "other: KeyboardInterrupt "]


def test_workers_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        CpuWorkers(0)


class _Computing:
    """How many jobs are computing (between two stop points), and what exclusive blocks saw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.seen: list[int] = []

    def add(self, n: int) -> None:
        with self.lock:
            self.now += n

    def job(self, workers: CpuWorkers, steps: int) -> Callable[[], str]:
        """Computes ``steps`` times (a few ms each), calling ``stop_point`` in between."""

        def run() -> str:
            for _ in range(steps):
                self.add(1)
                time.sleep(0.005)
                self.add(-1)
                workers.stop_point()
            return f"trained, {len(self.seen) // 2} exclusive blocks meanwhile"

        return run

    def look(self, workers: CpuWorkers) -> None:
        """An exclusive block: notes how many jobs compute as it starts and as it ends."""
        with workers.exclusive():
            self.seen.append(self.now)
            time.sleep(0.02)
            self.seen.append(self.now)


def test_no_job_computes_beside_an_exclusive_block_in_a_job_or_in_the_caller() -> None:
    workers, computing = CpuWorkers(2), _Computing()

    def exporting_job() -> str:
        computing.job(workers, 5)()
        computing.look(workers)  # as a job logs its model
        return "exported"

    def on_result(i: int, result: str) -> None:
        computing.look(workers)  # as the caller logs a finished job's model

    jobs = [exporting_job, computing.job(workers, 200), exporting_job, computing.job(workers, 50)]
    results = workers.run(jobs, on_result)
    assert results[0] == results[2] == "exported"
    # The long job paused for the blocks that came while it ran (not only after it).
    assert int(results[1].split(", ")[1].split()[0]) >= 2
    assert len(computing.seen) == 2 * (2 + 4) and set(computing.seen) == {0}
    assert computing.now == 0


def test_results_are_handed_over_in_the_callers_thread_as_they_come() -> None:
    for n in (1, 2):
        handed: list[tuple[int, str, bool]] = []

        def on_result(i: int, result: str, into: list = handed) -> None:
            into.append((i, result, threading.current_thread() is threading.main_thread()))

        jobs = [lambda: "a", lambda: "b", lambda: "c"]
        assert CpuWorkers(n).run(jobs, on_result) == ["a", "b", "c"]
        assert sorted(handed) == [(0, "a", True), (1, "b", True), (2, "c", True)]


def test_an_error_in_on_result_ends_the_run_after_the_running_jobs() -> None:
    log: list[str] = []
    started = threading.Event()

    def on_result(i: int, result: str) -> None:
        assert started.wait(WAIT)  # the second job runs: the error must wait for it
        raise RuntimeError(f"logging result {i} failed")

    def slow() -> str:
        started.set()
        time.sleep(0.2)
        log.append("slow finished")
        return "b"

    jobs = [lambda: "a", slow, lambda: log.append("never") or "c"]
    with pytest.raises(RuntimeError, match="logging result 0 failed"):
        CpuWorkers(2).run(_drawn(jobs, log), on_result)
    assert log == ["draw 0", "draw 1", "slow finished"]


def test_one_worker_needs_no_exclusion() -> None:
    workers = CpuWorkers(1)
    with workers.exclusive():
        assert workers.run([lambda: 1]) == [1]  # would wait forever if it excluded itself


def test_a_stop_point_inside_a_job_s_exclusive_block_goes_on() -> None:
    # The block holds the exclusivity: pausing there for another waiting block (here the
    # caller's, logging the first job's result) would wait for itself.
    workers, log = CpuWorkers(2), []
    inside = threading.Event()

    def holder() -> str:
        with workers.exclusive():
            inside.set()
            deadline = time.monotonic() + 0.3  # the caller's block starts waiting meanwhile
            while time.monotonic() < deadline:
                workers.stop_point()
                time.sleep(0.01)
            log.append("holder's block")
        return "held"

    def on_result(i: int, result: str) -> None:
        if i == 0:
            assert inside.wait(WAIT)
            with workers.exclusive():
                log.append("caller's block")

    assert workers.run([lambda: "quick", holder], on_result) == ["quick", "held"]
    assert log == ["holder's block", "caller's block"]


class _DeferredPool:
    """A stand-in pool whose jobs start only when it is shut down: as a job handed over just
    as the caller stopped, whose thread had not started yet."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.handed: list[tuple[Future, Callable[[], object]]] = []

    def submit(self, job: Callable[[], object]) -> Future:
        self.handed.append((Future(), job))
        return self.handed[-1][0]

    def __enter__(self) -> _DeferredPool:
        return self

    def __exit__(self, *exc: object) -> None:
        for future, job in self.handed:
            future.set_result(job())


@pytest.mark.parametrize("interruption", [RuntimeError("drawing failed"), KeyboardInterrupt()])
def test_a_job_handed_over_as_the_run_is_interrupted_never_starts(monkeypatch, interruption):
    monkeypatch.setattr(concurrency, "ThreadPoolExecutor", _DeferredPool)
    log: list[str] = []

    def jobs() -> Iterator[Callable[[], object]]:
        yield lambda: log.append("started")
        raise interruption

    with pytest.raises(type(interruption)):
        CpuWorkers(2).run(jobs())
    assert log == []


def test_a_stop_point_outside_the_jobs_never_lets_an_exclusive_block_past_a_computing_job():
    # A thread that is not a job (here a helper thread) has no computation to pause: its
    # stop point must neither wait for the queued block nor count as a job stopping.
    workers, log = CpuWorkers(2), []
    computing, release = threading.Event(), threading.Event()

    def busy() -> str:
        computing.set()
        assert release.wait(WAIT)  # computes without a stop point until released
        log.append("busy job ended")
        return "busy"

    def exclusive() -> str:
        assert computing.wait(WAIT)
        with workers.exclusive():
            log.append("exclusive block")
        return "exclusive"

    def outside() -> None:
        deadline = time.monotonic() + WAIT
        while not workers._queued and time.monotonic() < deadline:  # noqa: SLF001
            time.sleep(0.01)
        workers.stop_point()
        log.append("outside stop point returned")
        release.set()

    helper = threading.Thread(target=outside)
    helper.start()
    assert workers.run([busy, exclusive]) == ["busy", "exclusive"]
    helper.join(WAIT)
    assert log == ["outside stop point returned", "busy job ended", "exclusive block"]
