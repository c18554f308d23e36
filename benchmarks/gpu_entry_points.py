"""The GPU check's entry points: every (dataset, experiment) twice on the GPU.

Run with ``mlflow run``, their final metrics must be identical (see :mod:`benchmarks.gpu_check`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.gpu_compare import Outcome, Report

REPO = Path(__file__).resolve().parents[1]


def entry_points() -> list[tuple[str, str]]:
    """Every (dataset, experiment) pair a user can run, from the experiment registry."""
    from lfxai.experiments.registry import entries

    return sorted(entries())


def mlflow_run(dataset: str, name: str, folder: Path, args) -> tuple[dict, dict]:
    """Runs one entry point with ``mlflow run`` into its own SQLite store in ``folder``.

    One store per run: concurrent writers would contend for one SQLite file's lock.

    Returns:
        The final metrics (timings left out) and the params of its top-level run.
    """
    from mlflow.tracking import MlflowClient

    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment("gpu-check", artifact_location=(folder / "artifacts").as_uri())
    params = {"name": name, "profile": "smoke", "device": "auto"}
    if args.data_dir:
        params["data_dir"] = args.data_dir
    command = [sys.executable, "-m", "mlflow", "run", str(REPO), "-e", dataset]
    command += [arg for key, value in params.items() for arg in ("-P", f"{key}={value}")]
    command += ["--env-manager", "local", "--experiment-name", "gpu-check"]
    env = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")
    }
    env["MLFLOW_TRACKING_URI"] = uri
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # Concurrent runs share the CPU cores; the same count in both repeats keeps them equal.
    env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.jobs))
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=args.entrypoint_timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-300:]}")
    runs = client.search_runs([client.get_experiment_by_name("gpu-check").experiment_id])
    top = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    if len(top) != 1:
        raise RuntimeError(f"expected one top-level run, found {len(top)}")
    metrics = {k: v for k, v in top[0].data.metrics.items() if not is_timing(k)}
    return metrics, top[0].data.params


def is_timing(metric: str) -> bool:
    """Whether a metric differs between runs of the same code: timings and system metrics.

    Wall-clock metrics (``time/*``, ``throughput/*``, ``*_seconds``) and system metrics
    (``system/*``: utilisation, memory).
    """
    return metric.startswith(("time/", "throughput/", "system/")) or "second" in metric


def same_runs(runs: list[tuple[dict, dict]]) -> Outcome:
    """Two runs of one entry point: identical final metrics, both on CUDA."""
    (first, params), (second, params2) = runs
    differ = sorted(k for k in first.keys() | second.keys() if first.get(k) != second.get(k))
    used = [params.get("device_used"), params2.get("device_used")]
    ok = not differ and used == ["cuda", "cuda"]
    return ("PASS" if ok else "FAIL"), (
        f"{len(first)} final metrics identical: {not differ}"
        + (f" (differ: {differ[:5]})" if differ else "")
        + f"; device_used {used}"
    )


def check_entry_points(report: Report, args) -> None:
    """Runs every entry point twice (``args.jobs`` at a time), one report line each."""
    pairs = entry_points()
    folder = Path(tempfile.mkdtemp(prefix="lfxai-gpu-check-"))
    jobs = [(dataset, name, repeat) for dataset, name in pairs for repeat in (0, 1)]
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            job: pool.submit(mlflow_run, *job[:2], folder / "-".join(map(str, job)), args)
            for job in jobs
        }
    for dataset, name in pairs:
        runs = [futures[(dataset, name, repeat)] for repeat in (0, 1)]
        report.run(
            f"entrypoint {dataset} -P name={name}",
            lambda runs=runs: same_runs([future.result() for future in runs]),
        )
