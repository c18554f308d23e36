"""Independent jobs side by side on threads, sharing torch's CPU threads among them.

A small model's training step uses two CPU threads poorly: two MNIST autoencoders trained
at once on one thread each finish 1.34x sooner than one after the other on two threads
(``python -m benchmarks.parallel_training``). torch's kernels release the GIL, so threads
are enough, and a job keeps logging to its own MLflow run (MLflow's active run is kept per
thread).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

import torch

from lfxai.tracking.stops import Stopped

T = TypeVar("T")


class CpuWorkers:
    """Runs jobs ``workers`` at a time, each with an equal share of torch's CPU threads.

    One worker runs every job in the caller's thread, exactly as a plain loop would. With
    more, jobs are drawn from their iterable only when a worker is free (so whatever a job
    holds, e.g. a masked training set, exists only while it runs), and torch's thread count
    is divided among the workers while they run, then restored.

    Outcomes: after a job's error no further job is drawn, the running ones finish (their
    work is kept) and the first error is raised. A stop in the caller's thread (a
    :class:`~lfxai.tracking.Stopped` signal or Ctrl-C) reaches each running job at its next
    :meth:`stop_point`, where it is raised again so that the job's own run ends KILLED;
    once they have ended it is raised in the caller.

    Args:
        workers: how many jobs run at once (>= 1).
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._stop: BaseException | None = None
        self._closed = False  # no job starts any more
        self._running = 0  # jobs started and not ended
        self._changed = threading.Condition()

    def stop_point(self) -> None:
        """Raises the caller's stop in a job's thread, if one arrived; jobs call it often."""
        stop = self._stop
        if stop is None:
            return
        if isinstance(stop, Stopped):  # a fresh one: an exception object has one traceback
            raise Stopped(stop.signum)
        raise KeyboardInterrupt

    def run(self, jobs: Iterable[Callable[[], T]]) -> list[T]:
        """Each job's result, in the order the jobs were drawn."""
        if self.workers == 1:
            return [job() for job in jobs]  # a stop arrives in the job itself
        previous = torch.get_num_threads()
        torch.set_num_threads(max(1, previous // self.workers))
        try:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="lfxai-worker") as pool:
                return self._run(pool, iter(jobs))
        finally:
            torch.set_num_threads(previous)

    def _run(self, pool: ThreadPoolExecutor, jobs: Iterable[Callable[[], T]]) -> list[T]:
        order: list[Future[T]] = []
        running: set[Future[T]] = set()
        error: BaseException | None = None
        try:
            while True:
                while error is None and len(running) < self.workers:
                    job = next(jobs, None)  # type: ignore[call-overload]
                    if job is None:
                        break
                    order.append(pool.submit(self._counted(job)))
                    running.add(order[-1])
                if not running:
                    break
                done, running = wait(running, return_when=FIRST_COMPLETED)
                failed = [f.exception() for f in done if f.exception() is not None]
                if error is None and failed:
                    error = failed[0]
        except BaseException as interruption:  # a stop, or an error drawing the next job
            # It may come while a job is being handed over (even while its thread starts),
            # so what is waited for is every job that started, not the futures known here.
            with self._changed:
                self._closed = True
                if not isinstance(interruption, Exception):
                    self._stop = interruption
                self._changed.wait_for(lambda: self._running == 0)
            raise
        if error is not None:
            raise error
        return [f.result() for f in order]

    def _counted(self, job: Callable[[], T]) -> Callable[[], T | None]:
        """``job``, counted while it runs; not started once the workers are closed."""

        def run() -> T | None:
            with self._changed:
                if self._closed:
                    return None  # handed over as the caller stopped: never started
                self._running += 1
            try:
                return job()
            finally:
                with self._changed:
                    self._running -= 1
                    self._changed.notify_all()

        return run
