"""Independent jobs side by side on threads, sharing torch's CPU threads among them.

A small model's training step uses two CPU threads poorly: two MNIST autoencoders trained
at once on one thread each finish 1.34x sooner than one after the other on two threads
(``python -m benchmarks.parallel_training``). torch's kernels release the GIL, so threads
are enough, and a job keeps logging to its own MLflow run (MLflow's active run is kept per
thread).

``torch.export`` is not among what may overlap: an export in one thread changes the float
rounding of what another thread computes meanwhile (seen as 1e-7 relative differences in a
retraining's test loss, from a bare ``torch.export.export`` of an encoder in the main thread;
plain forward passes there change nothing). Whatever must not overlap the jobs' computation
runs in :meth:`CpuWorkers.exclusive`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TypeVar

import torch

from lfxai.tracking.stops import Stopped

T = TypeVar("T")
# How often the caller's thread wakes while it waits for the jobs. A stop signal delivered
# to another thread (the kernel may pick any) has its Python handler run in the main thread
# only once that thread runs again: a SIGINT sent to a worker thread, with the caller blocked
# in a wait, was handled only when a job ended (tests/test_concurrency.py).
POLL_S = 0.2


class CpuWorkers:
    """Runs jobs ``workers`` at a time, each with an equal share of torch's CPU threads.

    One worker runs every job in the caller's thread, exactly as a plain loop would. With
    more, jobs are drawn from their iterable only when a worker is free (so whatever a job
    holds, e.g. a masked training set, exists only while it runs), and torch's thread count
    is divided among the workers while they run, then restored.

    A job computes between its :meth:`stop_point` calls (each epoch); an :meth:`exclusive`
    block, in a job or in the caller's thread, waits until every other job is at one, and
    they wait there until it ends.

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
        self._computing = 0  # jobs between two stop points
        self._queued = 0  # exclusive blocks waiting for the jobs to stop computing
        self._exclusive = False  # an exclusive block runs
        self._changed = threading.Condition()
        self._job = threading.local()  # .computing: this thread is a computing job

    def stop_point(self) -> None:
        """Where a job may be paused or stopped; jobs call it often (each epoch).

        Raises the caller's stop in the job's thread, if one arrived; lets a waiting
        :meth:`exclusive` block run first.
        """
        self._raise_if_stopped()
        if getattr(self._job, "computing", False) and self._queued:
            self._pause()
            self._resume()
            self._raise_if_stopped()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """A block no job computes beside (e.g. a ``torch.export``); see the module's doc."""
        if self.workers == 1:  # jobs run in the caller's thread: nothing runs beside
            yield
            return
        computing = getattr(self._job, "computing", False)
        if computing:
            self._pause()
        with self._changed:
            self._queued += 1
            try:
                while not self._changed.wait_for(
                    lambda: not self._exclusive and self._computing == 0, POLL_S
                ):
                    pass  # woken now and then, so that a stop signal's handler runs
            finally:
                self._queued -= 1
                self._changed.notify_all()
            self._exclusive = True
        try:
            yield
        finally:
            with self._changed:
                self._exclusive = False
                self._changed.notify_all()
            if computing:
                self._resume()

    def _pause(self) -> None:
        with self._changed:
            self._computing -= 1
            self._job.computing = False
            self._changed.notify_all()

    def _resume(self) -> None:
        """Waits for the exclusive blocks (running or waiting) to end, then computes again."""
        with self._changed:
            self._changed.wait_for(lambda: not self._exclusive and not self._queued)
            self._computing += 1
            self._job.computing = True

    def _raise_if_stopped(self) -> None:
        stop = self._stop
        if stop is None:
            return
        if isinstance(stop, Stopped):  # a fresh one: an exception object has one traceback
            raise Stopped(stop.signum)
        raise KeyboardInterrupt

    def run(
        self,
        jobs: Iterable[Callable[[], T]],
        on_result: Callable[[int, T], None] | None = None,
    ) -> list[T]:
        """Each job's result, in the order the jobs were drawn.

        ``on_result(i, result)`` is called in the caller's thread as soon as the i-th job
        drawn has ended (e.g. to log what it made while the others run); if it raises, that
        is the run's error.
        """
        done = on_result or (lambda i, result: None)
        if self.workers == 1:  # a stop arrives in the job itself
            results = []
            for i, job in enumerate(jobs):
                results.append(job())
                done(i, results[-1])
            return results
        previous = torch.get_num_threads()
        torch.set_num_threads(max(1, previous // self.workers))
        try:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="lfxai-worker") as pool:
                return self._run(pool, iter(jobs), done)
        finally:
            torch.set_num_threads(previous)

    def _run(
        self,
        pool: ThreadPoolExecutor,
        jobs: Iterable[Callable[[], T]],
        on_result: Callable[[int, T], None],
    ) -> list[T]:
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
                done, running = wait(running, POLL_S, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=order.index):
                    if future.exception() is not None:
                        error = future.exception() if error is None else error
                    elif error is None:
                        on_result(order.index(future), future.result())
        except BaseException as interruption:  # a stop, or an error drawing or in on_result
            # It may come while a job is being handed over (even while its thread starts):
            # a job not started yet never starts. The pool's exit (``run``) then waits for
            # every job that did.
            with self._changed:
                self._closed = True
                if not isinstance(interruption, Exception):
                    self._stop = interruption
            raise
        if error is not None:
            raise error
        return [f.result() for f in order]

    def _counted(self, job: Callable[[], T]) -> Callable[[], T | None]:
        """``job``, counted as computing while it runs; not started once the workers close."""

        def run() -> T | None:
            with self._changed:
                if self._closed:
                    return None  # handed over as the caller stopped: never started
            self._resume()
            try:
                return job()
            finally:
                self._pause()

        return run
