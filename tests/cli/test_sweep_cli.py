"""``entrypoints/sweep.py`` (lfxai.cli.sweep) with stand-ins: the options, what the parent
run logs and says, when an invocation fails, and its worker processes."""

from __future__ import annotations

import dataclasses
import signal
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from optuna.trial import TrialState

from lfxai import __version__
from lfxai.cli import sweep as sweep_cli
from lfxai.cli.naming import Request
from lfxai.sweep.objective import ERROR_ATTR, PARENT_ATTR, STUDY_TAG
from lfxai.sweep.settings import CredentialRefused
from lfxai.tracking import Stopped

# --------------------------------------------------------------------------- options


def test_the_options_and_their_defaults():
    parser = sweep_cli._parser()  # noqa: SLF001
    assert parser.prog == "entrypoints/sweep.py"
    args, extra = parser.parse_known_args(["--dataset", "mnist", "--n_trials", "4", "--seed", "1"])
    assert vars(args) == {"dataset": "mnist", "n_trials": "4", "profile": "quick"}
    assert extra == ["--seed", "1"]
    assert (sweep_cli.EXPERIMENT, sweep_cli.STORAGE_TAG) == ("sweep", "lfxai.storage")


@pytest.mark.parametrize(
    ("argv", "missing"),
    [(["--n_trials", "2"], "--dataset"), (["--dataset", "mnist"], "--n_trials")],
)
def test_dataset_and_n_trials_are_required(argv, missing, capsys):
    with pytest.raises(SystemExit) as exit_:
        sweep_cli.main(argv)
    assert exit_.value.code == 2
    assert f"the following arguments are required: {missing}" in capsys.readouterr().err


# --------------------------------------------------------------------------- main


@pytest.fixture()
def launched(monkeypatch):
    seen: dict = {"places": [], "executions": []}

    def launch(work, launched_run, launcher=None):
        seen["launch"] = (launched_run, launcher)
        work()
        return 0

    @contextmanager
    def placed_run(location, name):
        seen["places"].append((location, name))
        yield "tracker"

    monkeypatch.setattr(sweep_cli, "launch", launch)
    monkeypatch.setattr(sweep_cli, "placed_run", placed_run)
    monkeypatch.setattr(sweep_cli, "_execute", lambda *a: seen["executions"].append(a))
    monkeypatch.setattr(sweep_cli, "DisvaeBackend", lambda: "disvae-backend")
    monkeypatch.setattr(sweep_cli, "sweep_datasets", lambda: ["dsprites", "mnist"])
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return seen


def test_a_sweep_runs_in_its_datasets_sweep_experiment(launched):
    argv = ["--dataset", "mnist", "--n_trials", "4", "--profile", "smoke", "--n_epochs=3"]
    assert sweep_cli.main(argv) == 0
    assert launched["places"] == [("mnist-sweep", "smoke · sweep")]
    ((request, overrides, tracker, backend, launched_run),) = launched["executions"]
    declared = {"dataset": "mnist", "n_trials": "4", "profile": "smoke"}
    assert request == Request("sweep", "sweep", "smoke", declared, argv)
    assert overrides == {"n_epochs": "3", "n_trials": "4"}
    assert (tracker, backend, launched_run) == ("tracker", "disvae-backend", None)
    assert launched["launch"] == (None, None)


def test_under_mlflow_run_the_launched_run_is_the_launcher_and_a_backend_given_is_used(
    launched, monkeypatch
):
    monkeypatch.setenv("MLFLOW_RUN_ID", "launched-1")
    assert sweep_cli.main(["--dataset", "cifar10", "--n_trials", "1"], backend="fake") == 0
    assert launched["places"] == [(None, "quick · sweep")]  # no sweep on cifar10: no experiment
    ((_, _, _, backend, launched_run),) = launched["executions"]
    assert (backend, launched_run) == ("fake", "launched-1")
    assert launched["launch"] == ("launched-1", "launched-1")


def test_main_reads_the_command_line_by_default(launched, monkeypatch):
    monkeypatch.setattr(
        sweep_cli.sys, "argv", ["sweep.py", "--dataset", "mnist", "--n_trials", "2"]
    )
    assert sweep_cli.main() == 0
    assert launched["executions"][0][0].argv == ["--dataset", "mnist", "--n_trials", "2"]


# --------------------------------------------------------------------------- messages


@pytest.mark.parametrize(
    ("store", "database"),
    [
        ("sqlite:////data/mlflow.db", "sqlite:////data/mlflow.db"),
        ("http://127.0.0.1:5000", "<the server's database URI>"),
    ],
)
def test_a_credential_mlflow_run_logged_is_explained_with_how_to_purge_it(
    monkeypatch, store, database
):
    monkeypatch.setattr(sweep_cli, "tracking_uri", lambda: store)
    assert sweep_cli._logged_by_mlflow_run("r1") == (  # noqa: SLF001
        "; `mlflow run` had already stored it as given, in the param `storage` of its run r1, "
        "and printed it on its '=== Running command' line: purge that run with `mlflow runs "
        f"delete --run-id r1` then `mlflow gc --backend-store-uri {database} --run-ids r1`, "
        "and pass the URL in OPTUNA_STORAGE, off the command line"
    )


def _config(**changes):
    values = {
        "dataset": "mnist",
        "objective": "pareto",
        "n_trials": 6,
        "n_jobs": 2,
        "study_name": None,
        "heartbeat_interval": 5,
        "grace_period": 30,
    }
    values.update(changes)
    config = SimpleNamespace(**values)
    config.resolved_study_name = lambda: config.study_name or "mnist-pareto"
    return config


def test_the_description_says_what_ran_where_the_study_lives_and_how_to_continue(monkeypatch):
    calls = []
    monkeypatch.setattr(sweep_cli, "describe", lambda *a: calls.append(a) or "described")
    request = Request("sweep", "sweep", "smoke", {}, [])
    given = {"n_epochs": "3"}
    changed = {"n_epochs": (3, 5)}
    text = sweep_cli._describe(  # noqa: SLF001
        request, _config(), given, changed, "sqlite:///o.db", 7, "sqlite:///m.db"
    )
    assert text == "described"
    ((req, headline, continued, changed_, label, notes, environment),) = calls
    assert req is request and changed_ is changed
    assert headline == (
        "**sweep** #7 of study `mnist-pareto` on **mnist**, profile `smoke`, objective "
        "`pareto`: 6 trials, 2 worker(s)."
    )
    assert continued == {"n_epochs": "3", "study_name": "mnist-pareto", "storage": "sqlite:///o.db"}
    assert label == "Continue the study (here or on another machine sharing the storage)"
    assert notes == [
        "Optuna storage: `sqlite:///o.db`. Each trial is a nested run (tags "
        "`lfxai.study_name`, `lfxai.trial_number`)."
    ]
    assert environment == {"MLFLOW_TRACKING_URI": "sqlite:///m.db"}


# --------------------------------------------------------------------------- _execute


@dataclasses.dataclass
class _Base:
    dim_latent: int = 3
    beta_list: tuple = (1.0,)
    loss_list: tuple = ("beta",)
    n_runs: int = 2
    n_epochs: int = 4
    data_dir: str = "data"
    device: str = "cpu"
    batch_size: int | None = None


class _Heartbeat:
    def __init__(self):
        self.paced = []

    def pace(self, interval, grace):
        self.paced.append((interval, grace))


class _Tracker:
    run_id = "parent-1"

    def __init__(self, heartbeat=True):
        self.heartbeat = _Heartbeat() if heartbeat else None
        self.calls: list[tuple] = []

    def run_number(self):
        return 3

    def __getattr__(self, name):
        if name.startswith(("set_", "log_")):
            return lambda *a, **k: self.calls.append((name, a, k))
        raise AttributeError(name)


def _trial(number, state, parent="parent-1", error=None):
    attrs = {PARENT_ATTR: parent} | ({} if error is None else {ERROR_ATTR: error})
    return SimpleNamespace(number=number, state=state, user_attrs=attrs)


class _Claim:
    def __init__(self, key, verdict, reason):
        self.key, self.verdict, self.reason = key, verdict, reason


@pytest.fixture()
def sweeping(monkeypatch):
    seen: dict = {"order": [], "trials": [], "seconds": [100.0, 130.0]}
    config = _config()
    seen["config"] = config
    base = _Base()
    seen["base"] = base

    def resolve_sweep(dataset, profile, overrides, backend):
        seen["order"].append(("resolve", dataset, profile, dict(overrides), backend))
        if "error" in seen:
            raise seen["error"]
        return SimpleNamespace(config=config, base=base, changed=seen.get("changed", {}))

    study = SimpleNamespace(get_trials=lambda: seen["trials"])
    seen["study"] = study
    backend = SimpleNamespace(
        load_splits=lambda plugin, b, t: seen["order"].append(("splits", plugin, b, t)) or "splits"
    )
    seen["backend"] = backend
    clock = SimpleNamespace(perf_counter=lambda: seen["seconds"].pop(0))
    monkeypatch.setattr(sweep_cli, "time", clock)
    monkeypatch.setattr(sweep_cli, "resolve_sweep", resolve_sweep)
    monkeypatch.setattr(
        sweep_cli, "end_dead_runs", lambda t, r: seen["order"].append(("end_dead_runs", t, r))
    )
    monkeypatch.setattr(sweep_cli, "tracking_uri", lambda: "sqlite:///m.db")
    monkeypatch.setattr(sweep_cli, "absolute_uri", lambda uri: f"abs:{uri}")
    monkeypatch.setattr(
        sweep_cli,
        "storage_url",
        lambda c, uri: seen["order"].append(("url", c is config, uri)) or "sqlite:///o.db",
    )
    monkeypatch.setattr(
        sweep_cli,
        "make_storage",
        lambda url, c: seen["order"].append(("storage", url, c is config)) or "rdb",
    )

    def open_study(c, profile, storage, comparable):
        seen["order"].append(("study", c is config, profile, storage, comparable))
        return study

    monkeypatch.setattr(sweep_cli, "open_study", open_study)
    plugins = {"mnist": SimpleNamespace(title="MNIST")}
    monkeypatch.setattr(sweep_cli, "get_dataset", plugins.__getitem__)
    monkeypatch.setattr(sweep_cli, "SweepObjective", lambda *a: ("objective", a))
    monkeypatch.setattr(sweep_cli, "SweepJob", lambda *a: ("job", a))
    monkeypatch.setattr(
        sweep_cli, "_run_workers", lambda job, s, o: seen["order"].append(("workers", job, s, o))
    )

    def log_report(tracker, s, c, title):
        seen["order"].append(("report", tracker, s, c is config, title))
        return {
            "trials": {"COMPLETE": 2},
            "best_run_ids": ["t1"],
            "claims": [_Claim("pareto_front", "holds", "(3 points)")],
        }

    monkeypatch.setattr(sweep_cli, "log_report", log_report)
    monkeypatch.setattr(sweep_cli, "describe", lambda *a: "the description")
    return seen


def _execute(sweeping, tracker=None, overrides=None, launched_run=None):
    request = Request("sweep", "sweep", "smoke", {"dataset": "mnist"}, [])
    tracker = tracker or _Tracker()
    overrides = {"n_trials": "6", "n_epochs": "4", "storage": "sqlite:///o.db"} | (overrides or {})
    summary = sweep_cli._execute(  # noqa: SLF001
        request, overrides, tracker, sweeping["backend"], launched_run
    )
    return tracker, summary


def test_an_invocation_logs_its_settings_runs_its_trials_and_reports(sweeping, capsys):
    sweeping["trials"] = [
        _trial(0, TrialState.COMPLETE),
        _trial(1, TrialState.FAIL, error="nan"),
        _trial(2, TrialState.COMPLETE, parent="other"),  # another invocation's
        _trial(3, TrialState.RUNNING),  # not finished
        _trial(4, TrialState.PRUNED),
    ]
    tracker, summary = _execute(sweeping, launched_run="launched-1")
    assert summary["best_run_ids"] == ["t1"]
    assert tracker.heartbeat.paced == [(5, 30)]
    order = sweeping["order"]
    assert order[0] == (
        "resolve",
        "mnist",
        "smoke",
        {"n_trials": "6", "n_epochs": "4", "storage": "sqlite:///o.db"},
        sweeping["backend"],
    )
    assert order[1] == ("end_dead_runs", tracker, "launched-1")
    comparable = {"n_epochs": "4"}  # no sampled key, no data_dir / device, no None
    assert order[2:] == [
        ("url", True, "sqlite:///m.db"),
        ("storage", "sqlite:///o.db", True),
        ("study", True, "smoke", "rdb", comparable),
        ("splits", order[5][1], sweeping["base"], tracker),
        (
            "workers",
            (
                "job",
                (
                    sweeping["config"],
                    "smoke",
                    sweeping["base"],
                    sweeping["backend"],
                    "parent-1",
                    "sqlite:///o.db",
                    comparable,
                ),
            ),
            sweeping["study"],
            (
                "objective",
                (
                    sweeping["config"],
                    order[5][1],
                    sweeping["base"],
                    tracker,
                    "splits",
                    sweeping["backend"],
                ),
            ),
        ),
        ("report", tracker, sweeping["study"], True, "MNIST sweep `mnist-pareto` (pareto)"),
    ]
    calls = {name: (args, kwargs) for name, args, kwargs in tracker.calls}
    assert calls["set_name"] == (("#3 smoke study=mnist-pareto · sweep",), {})
    identity = {
        "dataset": "mnist",
        "experiment": "sweep",
        "profile": "smoke",
        "version": __version__,
    }
    assert calls["log_config"] == ((identity, sweeping["config"]), {})
    shared = {"n_epochs": "4", "data_dir": "data", "device": "cpu"}
    assert calls["log_params"] == ((shared,), {"prefix": "trial."})
    assert calls["log_dict"][0] == (
        {"n_epochs": 4, "data_dir": "data", "device": "cpu", "batch_size": None},
        "trial_config.yaml",
    )
    assert calls["set_tags"] == (
        ({STUDY_TAG: "mnist-pareto", "lfxai.storage": "sqlite:///o.db"},),
        {},
    )
    assert calls["set_description"] == (("the description",), {})
    assert calls["log_metrics"] == (
        (
            {
                "time/total_seconds": 30.0,
                "trials/this_invocation": 3.0,  # 0, 1 and 4: ours and finished
                "trials/per_hour": 360.0,
            },
        ),
        {},
    )
    assert capsys.readouterr().out.splitlines() == [
        "[lfxai] sweep mnist-pareto: 3 trials in 30 s, run parent-1",
        "[lfxai] study states: {'COMPLETE': 2}; best runs: ['t1']",
        "  claim pareto_front: holds (3 points)",
        "[lfxai] store: sqlite:///m.db; optuna storage: sqlite:///o.db",
    ]


def test_the_description_repeats_what_was_given_but_n_trials_and_storage(sweeping, monkeypatch):
    seen = []
    monkeypatch.setattr(sweep_cli, "_describe", lambda *a: seen.append(a) or "d")
    sweeping["changed"] = {"n_trials": (6, 4), "n_epochs": (4, 2)}
    tracker, _ = _execute(sweeping)
    ((request, config, given, changed, storage, number, store),) = seen
    assert given == {"n_epochs": "4"}
    assert changed == {"n_epochs": (4, 2)}  # n_trials is declared, not a change
    assert (config, storage, number, store) == (
        sweeping["config"],
        "sqlite:///o.db",
        3,
        "abs:sqlite:///m.db",
    )


def test_a_tracker_without_heartbeat_and_no_time_passed(sweeping):
    sweeping["seconds"][:] = [5.0, 5.0]
    tracker, _ = _execute(sweeping, tracker=_Tracker(heartbeat=False))
    (metrics,) = [a[0] for name, a, k in tracker.calls if name == "log_metrics"]
    assert metrics == {
        "time/total_seconds": 0.0,
        "trials/this_invocation": 0.0,
        "trials/per_hour": 0.0,
    }


def test_trials_per_hour_under_a_second(sweeping):
    sweeping["seconds"][:] = [2.0, 2.5]
    sweeping["trials"] = [_trial(0, TrialState.COMPLETE)]
    tracker, _ = _execute(sweeping)
    (metrics,) = [a[0] for name, a, k in tracker.calls if name == "log_metrics"]
    assert metrics["trials/per_hour"] == pytest.approx(7200.0)


def test_an_invocation_whose_every_trial_failed_fails_naming_the_first(sweeping, capsys):
    sweeping["trials"] = [
        _trial(5, TrialState.FAIL, error="ValueError: nan loss"),
        _trial(6, TrialState.FAIL),
        _trial(7, TrialState.COMPLETE, parent="other"),
    ]
    with pytest.raises(RuntimeError) as error:
        _execute(sweeping)
    assert str(error.value) == (
        "every trial of this invocation failed; trial 5: ValueError: nan loss"
    )
    assert capsys.readouterr().out == ""
    sweeping["trials"] = [_trial(2, TrialState.FAIL)]
    sweeping["seconds"][:] = [1.0, 2.0]
    with pytest.raises(
        RuntimeError,
        match=r"^every trial of this invocation failed; trial 2: "
        r"see the trials' runs$",
    ):
        _execute(sweeping)


def test_a_credential_is_refused_and_a_p_value_explained(sweeping, monkeypatch):
    sweeping["error"] = CredentialRefused("storage has a password")
    monkeypatch.setattr(sweep_cli, "_logged_by_mlflow_run", lambda run: f" (purge {run})")
    with pytest.raises(CredentialRefused) as error:
        _execute(sweeping, launched_run="launched-1")
    assert str(error.value) == "storage has a password (purge launched-1)"
    assert error.value.__suppress_context__
    with pytest.raises(CredentialRefused) as error:
        _execute(sweeping)  # not under mlflow run: nothing logged it
    assert str(error.value) == "storage has a password"
    request = Request("sweep", "sweep", "smoke", {"dataset": "mnist"}, [])
    with pytest.raises(CredentialRefused) as error:
        sweep_cli._execute(  # noqa: SLF001
            request, {"n_trials": "1"}, _Tracker(), sweeping["backend"], "launched-1"
        )  # from OPTUNA_STORAGE, not a -P value
    assert str(error.value) == "storage has a password"
    assert sweeping["order"][-1][0] == "resolve"  # nothing ran


# --------------------------------------------------------------------------- workers


class _Process:
    def __init__(self, context, target, args, name):
        self.context, self.target, self.args, self.name = context, target, args, name
        self.pid = None
        self.exitcode = None
        self.alive = False
        context.made.append(self)

    def start(self):
        self.context.events.append(("start", self.name))
        self.pid = 1000 + len(self.context.events)
        self.alive = True

    def join(self):
        self.context.events.append(("join", self.name))
        self.alive = False
        self.exitcode = self.context.exitcodes.get(self.name, 0)

    def is_alive(self):
        return self.alive


class _Context:
    def __init__(self):
        self.made, self.events, self.exitcodes = [], [], {}

    def Process(self, target, args, name):  # noqa: N802 (multiprocessing's name)
        return _Process(self, target, args, name)


@pytest.fixture()
def workers(monkeypatch):
    context = _Context()
    asked = []
    monkeypatch.setattr(
        sweep_cli.multiprocessing, "get_context", lambda kind: asked.append(kind) or context
    )
    context.asked = asked
    return context


def _job(n_trials, n_jobs):
    return SimpleNamespace(config=SimpleNamespace(n_trials=n_trials, n_jobs=n_jobs))


def test_the_trials_are_shared_with_spawned_worker_processes(workers, monkeypatch):
    monkeypatch.setattr(
        sweep_cli, "optimize", lambda s, o, n: workers.events.append(("optimize", s, o, n))
    )
    job = _job(7, 3)
    sweep_cli._run_workers(job, "study", "objective")  # noqa: SLF001
    assert workers.asked == ["spawn"]
    assert [(p.target, p.args, p.name) for p in workers.made] == [
        (sweep_cli._worker, (job, 2), "lfxai-sweep-worker-1"),  # noqa: SLF001
        (sweep_cli._worker, (job, 2), "lfxai-sweep-worker-2"),  # noqa: SLF001
    ]
    assert workers.events == [
        ("start", "lfxai-sweep-worker-1"),
        ("start", "lfxai-sweep-worker-2"),
        ("optimize", "study", "objective", 3),  # this process's share comes first
        ("join", "lfxai-sweep-worker-1"),
        ("join", "lfxai-sweep-worker-2"),
    ]


def test_a_worker_with_no_share_is_not_started(workers, monkeypatch):
    monkeypatch.setattr(sweep_cli, "optimize", lambda s, o, n: workers.events.append(n))
    sweep_cli._run_workers(_job(2, 4), "study", "objective")  # noqa: SLF001
    assert [p.name for p in workers.made] == ["lfxai-sweep-worker-1"]
    assert workers.events == [
        ("start", "lfxai-sweep-worker-1"),
        1,
        ("join", "lfxai-sweep-worker-1"),
    ]
    workers.made.clear()
    sweep_cli._run_workers(_job(3, 1), "study", "objective")  # noqa: SLF001
    assert workers.made == []


def test_a_failed_worker_fails_the_invocation_naming_it(workers, monkeypatch):
    monkeypatch.setattr(sweep_cli, "optimize", lambda s, o, n: None)
    workers.exitcodes = {"lfxai-sweep-worker-2": 3, "lfxai-sweep-worker-3": 1}
    with pytest.raises(RuntimeError) as error:
        sweep_cli._run_workers(_job(8, 4), "study", "objective")  # noqa: SLF001
    assert str(error.value) == (
        "sweep worker lfxai-sweep-worker-2 exited with 3 (its output above says why); its "
        "finished trials are in the study"
    )


def test_a_stop_is_passed_to_the_live_workers_and_waited_for(workers, monkeypatch):
    killed = []

    def optimize(study, objective, n):
        workers.made[1].alive = False  # this one ended on its own
        raise Stopped(signal.SIGINT)

    monkeypatch.setattr(sweep_cli, "optimize", optimize)
    monkeypatch.setattr(sweep_cli.os, "kill", lambda pid, signum: killed.append((pid, signum)))
    with pytest.raises(Stopped):
        sweep_cli._run_workers(_job(3, 3), "study", "objective")  # noqa: SLF001
    first, second = workers.made
    assert killed == [(first.pid, signal.SIGINT)]
    assert workers.events[-2:] == [("join", first.name), ("join", second.name)]


def test_a_stop_before_a_worker_started_kills_and_joins_only_the_started(workers, monkeypatch):
    killed = []
    started = []

    def start(process):
        if started:
            raise Stopped(signal.SIGTERM)
        started.append(process.name)
        process.pid, process.alive = 42, True

    monkeypatch.setattr(_Process, "start", start)
    monkeypatch.setattr(sweep_cli.os, "kill", lambda pid, signum: killed.append((pid, signum)))
    with pytest.raises(Stopped):
        sweep_cli._run_workers(_job(3, 3), "study", "objective")  # noqa: SLF001
    assert killed == [(42, signal.SIGTERM)]
    assert workers.events == [("join", "lfxai-sweep-worker-1")]


def test_a_worker_runs_its_share_following_its_parent_and_exits_with_a_stops_code(monkeypatch):
    seen = []

    @contextmanager
    def stop_signals(follow_parent):
        seen.append(("signals", follow_parent))
        yield

    def run_share(job, n):
        seen.append(("share", job, n))
        if n == 0:
            raise Stopped(signal.SIGTERM)

    monkeypatch.setattr(sweep_cli, "stop_signals", stop_signals)
    monkeypatch.setattr(sweep_cli, "run_share", run_share)
    sweep_cli._worker("job", 2)  # noqa: SLF001
    assert seen == [("signals", True), ("share", "job", 2)]
    with pytest.raises(SystemExit) as exit_:
        sweep_cli._worker("job", 0)  # noqa: SLF001
    assert exit_.value.code == 143


def test_the_help_says_what_each_option_does():
    text = " ".join(sweep_cli._parser().format_help().split())  # noqa: SLF001
    assert (
        "[--profile PROFILE] Optuna sweep over a VAE's beta, latent size and loss; other --key "
        "value pairs override sweep or trial settings. options:"
    ) in text
    assert "--dataset DATASET a data set with the disvae experiment" in text
    assert "--n_trials N_TRIALS trials this invocation runs" in text
    assert "--profile PROFILE one of ['paper', 'quick', 'smoke']" in text
