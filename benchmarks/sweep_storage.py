"""Times Optuna's RDB storage against MLflow's ``MlflowStorage`` for a sweep's workers.

Run from the repository root: ``python -m benchmarks.sweep_storage [--workers 2 --trials 20]``.
For each storage, ``--workers`` processes run ``--trials`` trials each of a trivial objective
(one float parameter) on one study, all at once; it prints the trials per second of the
whole set (all trials over the span from the first start to the last end) and checks the
study afterwards: every trial COMPLETE, none lost (fewer than workers x trials) and none
duplicated (two trials with one number). Storages:

- ``rdb-sqlite``: ``optuna.storages.RDBStorage`` on a SQLite file, with heartbeats (what
  the sweep uses by default);
- ``mlflow-sqlite``: ``mlflow.optuna.storage.MlflowStorage`` in a SQLite MLflow store (the
  study is an MLflow run, each trial a nested run);
- ``rdb-url`` / ``mlflow-url`` with ``--rdb-url`` / ``--tracking-uri`` (e.g. PostgreSQL or a
  tracking server).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

STUDY = "bench"


def _storage(kind: str, target: str):
    import optuna

    warnings.simplefilter("ignore")  # experimental-feature warnings of both storages
    if kind.startswith("rdb"):
        return optuna.storages.RDBStorage(
            target,
            engine_kwargs={"connect_args": {"timeout": 60}} if target.startswith("sqlite") else {},
            heartbeat_interval=30,
            grace_period=120,
        )
    from mlflow.optuna.storage import MlflowStorage
    from mlflow.tracking import MlflowClient

    os.environ["MLFLOW_TRACKING_URI"] = target
    client = MlflowClient()
    experiment = client.get_experiment_by_name(STUDY)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(STUDY)
    return MlflowStorage(experiment_id=experiment_id)


def _objective(trial) -> float:
    x = trial.suggest_float("x", -10, 10)
    return (x - 2) ** 2


def _worker(kind: str, target: str, trials: int, seed: int, out) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _storage(kind, target)
    study = optuna.load_study(
        study_name=STUDY, storage=storage, sampler=optuna.samplers.RandomSampler(seed=seed)
    )
    start = time.time()
    study.optimize(_objective, n_trials=trials)
    if hasattr(storage, "flush_all_batches"):
        storage.flush_all_batches()
    out.put((start, time.time()))


def measure(kind: str, target: str, workers: int, trials: int) -> dict[str, float]:
    """Runs the workers on a new study; returns throughput and the study's health."""
    import optuna

    storage = _storage(kind, target)
    optuna.create_study(study_name=STUDY, storage=storage)
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    processes = [
        context.Process(target=_worker, args=(kind, target, trials, seed, out))
        for seed in range(workers)
    ]
    for process in processes:
        process.start()
    spans = [out.get(timeout=1800) for _ in processes]
    for process in processes:
        process.join()
    study = optuna.load_study(study_name=STUDY, storage=_storage(kind, target))
    every = study.get_trials(deepcopy=False)
    numbers = Counter(t.number for t in every)
    seconds = max(e for _, e in spans) - min(s for s, _ in spans)
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in every)
    return {
        "trials_per_s": len(every) / seconds,
        "seconds": seconds,
        "trials": float(len(every)),
        "complete": float(complete),
        "lost": float(workers * trials - complete),
        "duplicated_numbers": float(sum(n - 1 for n in numbers.values() if n > 1)),
        "exit_codes_nonzero": float(sum(p.exitcode != 0 for p in processes)),
    }


def main(argv: list[str] | None = None) -> int:
    """Times each storage and prints one line each, with its trials checked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trials", type=int, default=20, help="trials per worker")
    parser.add_argument("--rdb-url", help="also time RDBStorage on this SQLAlchemy URL")
    parser.add_argument("--tracking-uri", help="also time MlflowStorage on this store")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="lfxai-storage-bench-"))
    from lfxai.tracking import init_store

    mlflow_store = init_store(f"sqlite:///{folder / 'mlflow.db'}")
    targets = [("rdb-sqlite", f"sqlite:///{folder / 'optuna.db'}"), ("mlflow-sqlite", mlflow_store)]
    if args.rdb_url:
        targets.append(("rdb-url", args.rdb_url))
    if args.tracking_uri:
        targets.append(("mlflow-url", args.tracking_uri))
    print(f"{args.workers} worker processes x {args.trials} trials of a trivial objective")
    for kind, target in targets:
        result = measure(kind, target, args.workers, args.trials)
        print(
            f"{kind:14s} {result['trials_per_s']:8.2f} trials/s  ({result['seconds']:.1f} s; "
            f"{result['complete']:.0f}/{result['trials']:.0f} complete, "
            f"lost {result['lost']:.0f}, duplicated numbers {result['duplicated_numbers']:.0f}, "
            f"failed workers {result['exit_codes_nonzero']:.0f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
