"""``entrypoints/<dataset>.py`` (lfxai.cli.experiment) with stand-ins: the options, the
settings resolved, what runs with what, the run's name and summary, and a resume's outcome
on the run `mlflow run` made."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from lfxai import __version__
from lfxai.cli import experiment as experiment_cli
from lfxai.cli.naming import Request
from lfxai.config import ConfigError, Resolved, setting_differences
from lfxai.tracking import ERROR_TAG, RESUMED_INTO_TAG, ResumeRefused, Stopped

# --------------------------------------------------------------------------- options


def test_the_options_and_their_defaults():
    parser = experiment_cli._parser("ecg5000")  # noqa: SLF001
    assert parser.prog == "entrypoints/ecg5000.py"
    args, extra = parser.parse_known_args(["--name", "x", "--n_epochs", "3"])
    assert vars(args) == {"name": "x", "profile": "quick", "resume_run_id": "none", "verbose": ""}
    assert extra == ["--n_epochs", "3"]
    assert "Run one ecg5000 experiment" in parser.description


def test_the_name_is_required(capsys):
    with pytest.raises(SystemExit) as exit_:
        experiment_cli.main("mnist", ["--profile", "smoke"])
    assert exit_.value.code == 2
    assert "the following arguments are required: --name" in capsys.readouterr().err


def test_the_help_names_the_experiments_and_profiles(capsys):
    with pytest.raises(SystemExit):
        experiment_cli._parser("ecg5000").parse_args(["--help"])  # noqa: SLF001
    out = " ".join(capsys.readouterr().out.split())
    assert "one of ['consistency_examples', 'consistency_features']" in out
    assert "one of ['paper', 'quick', 'smoke']" in out


# --------------------------------------------------------------------------- settings


def _request(dataset="mnist", name="consistency_features", profile="smoke", argv=()):
    return Request(dataset, name, profile, {"name": name, "profile": profile}, list(argv))


def test_settings_are_the_profiles_with_the_overrides_and_checked_by_the_data_set(monkeypatch):
    checked = []
    plugins = {"mnist": SimpleNamespace(check_config=checked.append)}
    monkeypatch.setattr(experiment_cli, "get_dataset", plugins.__getitem__)
    resolved = experiment_cli.settings(_request(), {"n_epochs": "7", "seed": "profile"})
    assert isinstance(resolved, Resolved)
    assert resolved.config.n_epochs == 7
    assert resolved.given == {"n_epochs": "7"}  # 'profile' keeps the profile's value
    assert "seed" not in resolved.changed and resolved.changed["n_epochs"][0] == 7
    assert checked == [resolved.config]


def test_settings_refuse_an_unknown_profile_naming_the_choices(monkeypatch):
    monkeypatch.setattr(
        experiment_cli, "load_profile", lambda *a: pytest.fail("no profile may be read")
    )
    with pytest.raises(ConfigError) as error:
        experiment_cli.settings(_request(profile="huge"), {})
    assert str(error.value) == "unknown profile 'huge'; valid choices: ['paper', 'quick', 'smoke']"


def test_settings_refuse_an_unknown_experiment_first():
    with pytest.raises(ConfigError, match=r"unknown experiment 'roar_test' for dataset 'ecg5000'"):
        experiment_cli.settings(_request("ecg5000", "roar_test", "huge"), {})


def test_settings_the_data_set_refuses_are_refused(monkeypatch):
    def check_config(config):
        raise ConfigError("split 'x' is unknown")

    monkeypatch.setattr(
        experiment_cli, "get_dataset", lambda name: SimpleNamespace(check_config=check_config)
    )
    with pytest.raises(ConfigError, match="split 'x' is unknown"):
        experiment_cli.settings(_request(), {})


# --------------------------------------------------------------------------- naming


class _Tracker:
    run_id = "run-1"

    def __init__(self, number=4, metrics=None, experiment="mnist-roar_test"):
        self.number, self._metrics, self._experiment = number, metrics or {}, experiment
        self.calls: list[tuple] = []

    def run_number(self):
        return self.number

    def set_name(self, name):
        self.calls.append(("set_name", name))

    def set_description(self, text):
        self.calls.append(("set_description", text))

    def log_config(self, identity, config):
        self.calls.append(("log_config", identity, config))

    def log_metrics(self, metrics):
        self.calls.append(("log_metrics", metrics))

    def metrics(self):
        return self._metrics

    def experiment_name(self):
        return self._experiment


def test_a_run_is_named_and_described_by_what_differs_from_its_profile():
    tracker = _Tracker(number=3)
    request = _request(name="roar_test", profile="quick", argv=["--name", "roar_test"])
    resolved = Resolved("config", {"n_epochs": "3", "seed": "1"}, {"n_epochs": (3, 5)})
    given = {"n_epochs": "3", "seed": "1"}  # seed=1 is the profile's: not in the name
    name = experiment_cli._name_and_describe(tracker, request, given, resolved)  # noqa: SLF001
    assert name == "#3 quick n_epochs=3 · roar_test"
    (set_name, set_description) = tracker.calls
    assert set_name == ("set_name", name)
    text = set_description[1]
    assert text.startswith("**roar_test** on **mnist**, profile `quick`, run #3.\n")
    assert "| n_epochs | 3 | 5 |" in text


def test_bad_input_names_the_run_by_what_was_given():
    tracker = _Tracker(number=1)
    request = _request(name="roar_test", profile="quick")
    name = experiment_cli._name_and_describe(tracker, request, {"n_epochs": "x"}, None)  # noqa: SLF001
    assert name == "#1 quick n_epochs=x · roar_test"
    text = tracker.calls[1][1]
    assert "The settings were not resolved (bad input" in text


# --------------------------------------------------------------------------- _execute


class _Experiment:
    def __init__(self, summary):
        self.summary, self.calls = summary, []

    def run(self, plugin, config, tracker):
        self.calls.append((plugin, config, tracker))
        return self.summary


@pytest.fixture()
def execution(monkeypatch):
    seen: dict = {"order": [], "summaries": []}
    experiment = _Experiment({"loss": 0.5})
    monkeypatch.setattr(experiment_cli, "EXPERIMENTS", {"roar_test": experiment})
    monkeypatch.setattr(experiment_cli, "get_dataset", lambda name: f"plugin:{name}")
    monkeypatch.setattr(
        experiment_cli, "end_dead_runs", lambda t, r: seen["order"].append(("end_dead_runs", t, r))
    )

    def settings(request, overrides):
        seen["order"].append(("settings", request, overrides))
        if "bad" in overrides:
            raise ConfigError("bad value 'x'")
        return Resolved("the-config", {"n_epochs": "2"}, {"n_epochs": (2, 5)})

    monkeypatch.setattr(experiment_cli, "settings", settings)
    monkeypatch.setattr(experiment_cli, "print_summary", lambda *a: seen["summaries"].append(a))
    seen["experiment"] = experiment
    return seen


def test_a_run_ends_dead_runs_then_logs_its_settings_runs_and_prints_its_summary(execution):
    tracker = _Tracker(number=2)
    request = _request(name="roar_test", profile="quick")
    experiment_cli._execute(request, {"n_epochs": "2"}, tracker, "launched-1")  # noqa: SLF001
    assert execution["order"] == [
        ("end_dead_runs", tracker, "launched-1"),
        ("settings", request, {"n_epochs": "2"}),
    ]
    identity = {
        "dataset": "mnist",
        "experiment": "roar_test",
        "profile": "quick",
        "version": __version__,
    }
    kinds = [c[0] for c in tracker.calls]
    assert kinds == ["set_name", "set_description", "log_config", "log_metrics"]
    assert tracker.calls[0] == ("set_name", "#2 quick n_epochs=2 · roar_test")
    assert "| n_epochs | 2 | 5 |" in tracker.calls[1][1]  # described by what differs
    assert tracker.calls[2] == ("log_config", identity, "the-config")
    (metrics,) = [c[1] for c in tracker.calls if c[0] == "log_metrics"]
    assert list(metrics) == ["time/total_seconds"] and 0 <= metrics["time/total_seconds"] < 60
    assert execution["experiment"].calls == [("plugin:mnist", "the-config", tracker)]
    assert execution["summaries"] == [
        (
            tracker,
            "mnist/roar_test (quick) finished",
            "#2 quick n_epochs=2 · roar_test",
            {"loss": 0.5},
        )
    ]


def test_settings_resolved_before_are_not_resolved_again(execution):
    tracker = _Tracker()
    resolved = Resolved("resumed-config", {}, {})
    experiment_cli._execute(_request(name="roar_test"), {}, tracker, None, resolved)  # noqa: SLF001
    assert execution["order"] == [("end_dead_runs", tracker, None)]
    assert execution["experiment"].calls[0][1] == "resumed-config"
    assert tracker.calls[0] == ("set_name", "#4 smoke · roar_test")


def test_bad_settings_name_the_run_by_what_was_given_and_run_nothing(execution):
    tracker = _Tracker(number=5)
    overrides = {"bad": "x", "seed": "profile"}
    with pytest.raises(ConfigError, match="bad value 'x'"):
        experiment_cli._execute(_request(name="roar_test"), overrides, tracker, None)  # noqa: SLF001
    assert [c[0] for c in tracker.calls] == ["set_name", "set_description"]
    assert tracker.calls[0] == ("set_name", "#5 smoke bad=x · roar_test")  # not seed=profile
    assert "The settings were not resolved" in tracker.calls[1][1]
    assert execution["experiment"].calls == [] and execution["summaries"] == []


# --------------------------------------------------------------------------- print_summary


def test_the_summary_says_where_the_run_is_its_verdicts_and_key_numbers(monkeypatch, capsys):
    monkeypatch.setattr(experiment_cli, "tracking_uri", lambda: "sqlite:///x/mlflow.db")
    monkeypatch.setattr(experiment_cli, "ui_command", lambda uri: f"mlflow ui <{uri}>")
    metrics = {
        "claims/verdict/b_claim": 1.0,
        "claims/verdict/a_claim": -1.0,
        "claims/verdict/c_claim": 1.0,
        "claims/verdict/d_claim": 0.5,  # not a verdict value: shown as it is
        "claims/margin/a_claim": 0.1,
        "loss": 2.0,
    }
    tracker = _Tracker(metrics=metrics, experiment="mnist-roar_test")
    summary = {"acc": 0.123456789, "n": 3, "name": "x"}
    experiment_cli.print_summary(tracker, "mnist/roar_test (quick) finished", "#1 quick", summary)
    assert capsys.readouterr().out.splitlines() == [
        "[lfxai] mnist/roar_test (quick) finished: run run-1, '#1 quick' in 'mnist-roar_test'",
        "[lfxai] claims: 2 holds, 0 inconclusive, 1 fails (claims.md in the run's artifacts "
        "says why)",
        "  fails        a_claim",
        "  holds        b_claim",
        "  holds        c_claim",
        "  0.5          d_claim",
        "  acc: 0.123457",
        "  n: 3",
        "  name: x",
        "[lfxai] store: sqlite:///x/mlflow.db; to look: mlflow ui <sqlite:///x/mlflow.db>",
    ]


def test_the_summary_prints_eight_numbers_and_counts_the_rest(monkeypatch, capsys):
    monkeypatch.setattr(experiment_cli, "tracking_uri", lambda: "http://user:pw@host")
    monkeypatch.setattr(experiment_cli, "ui_command", lambda uri: "ui")
    assert experiment_cli.SUMMARY_LINES == 8
    summary = {f"m{i}": float(i) for i in range(11)}
    experiment_cli.print_summary(_Tracker(), "done", "n", summary)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:9] == [f"  m{i}: {i:.6g}" for i in range(8)]
    assert lines[9] == "  ... and 3 more in the run's metrics"
    assert "pw" not in lines[10] and lines[10].startswith("[lfxai] store: http://")
    assert not any("claims" in line for line in lines)  # no verdicts: no claims line
    summary = {f"m{i}": i for i in range(8)}
    experiment_cli.print_summary(_Tracker(), "done", "n", summary)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 and "more" not in lines[-2]


# --------------------------------------------------------------------------- main


@pytest.fixture()
def launched(monkeypatch):
    """main() with launch() running the work at once and the work's pieces recorded."""
    seen: dict = {"places": [], "executions": [], "resumes": []}
    tracker = _Tracker()

    def launch(work, launched_run, launcher=None, verbose=None):
        seen["launch"] = {"launched_run": launched_run, "launcher": launcher, "verbose": verbose}
        work()
        return 0

    @contextmanager
    def placed_run(location, name):
        seen["places"].append((location, name))
        yield tracker

    monkeypatch.setattr(experiment_cli, "launch", launch)
    monkeypatch.setattr(experiment_cli, "placed_run", placed_run)
    monkeypatch.setattr(experiment_cli, "_execute", lambda *a: seen["executions"].append(a))
    monkeypatch.setattr(experiment_cli, "_resume", lambda *a: seen["resumes"].append(a))
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    seen["tracker"] = tracker
    return seen


def test_a_run_goes_to_its_experiment_with_the_overrides(launched):
    argv = ["--name", "roar_test", "--profile", "smoke", "--n_epochs", "3", "--seed=2"]
    assert experiment_cli.main("mnist", argv) == 0
    assert launched["places"] == [("mnist-roar_test", "smoke · roar_test")]
    (execution,) = launched["executions"]
    request, overrides, tracker, launched_run = execution
    assert request == Request(
        "mnist", "roar_test", "smoke", {"name": "roar_test", "profile": "smoke"}, argv
    )
    assert overrides == {"n_epochs": "3", "seed": "2"}
    assert tracker is launched["tracker"] and launched_run is None
    assert launched["launch"] == {"launched_run": None, "launcher": None, "verbose": None}
    assert launched["resumes"] == []


def test_an_unknown_experiment_gets_no_experiment_of_its_own(launched):
    assert experiment_cli.main("ecg5000", ["--name", "roar_test"]) == 0
    assert launched["places"] == [(None, "quick · roar_test")]


def test_under_mlflow_run_the_launched_run_is_the_launcher(launched, monkeypatch):
    monkeypatch.setenv("MLFLOW_RUN_ID", "launched-1")
    assert experiment_cli.main("mnist", ["--name", "disvae", "--verbose", "TRUE"]) == 0
    assert launched["launch"] == {
        "launched_run": "launched-1",
        "launcher": "launched-1",
        "verbose": True,
    }
    assert launched["executions"][0][3] == "launched-1"
    assert experiment_cli.main("mnist", ["--name", "disvae", "--verbose", "no"]) == 0
    assert launched["launch"]["verbose"] is False


def test_a_resume_stays_where_its_run_is_and_adopts_the_launched_run_itself(launched, monkeypatch):
    monkeypatch.setenv("MLFLOW_RUN_ID", "launched-1")
    argv = ["--name", "roar_test", "--resume_run_id", "abc", "--n_epochs", "3"]
    assert experiment_cli.main("mnist", argv) == 0
    assert launched["places"] == [] and launched["executions"] == []
    ((request, extra, resume, launched_run),) = launched["resumes"]
    assert (request.experiment, extra, resume, launched_run) == (
        "roar_test",
        ["--n_epochs", "3"],
        "abc",
        "launched-1",
    )
    assert launched["launch"] == {
        "launched_run": "launched-1",
        "launcher": None,  # _resume ends it with the resumed run's outcome
        "verbose": None,
    }


@pytest.mark.parametrize("value", ["none", "None", "NONE", ""])
def test_no_resume_run_id_is_a_new_run(launched, value):
    assert experiment_cli.main("mnist", ["--name", "roar_test", "--resume_run_id", value]) == 0
    assert launched["resumes"] == [] and len(launched["executions"]) == 1


def test_main_reads_the_command_line_by_default(launched, monkeypatch):
    monkeypatch.setattr(experiment_cli.sys, "argv", ["mnist.py", "--name", "pretext"])
    assert experiment_cli.main("mnist") == 0
    assert launched["executions"][0][0].argv == ["--name", "pretext"]


def test_bad_overrides_fail_inside_the_placed_run(launched):
    with pytest.raises(ConfigError, match="parameter --n_epochs has no value"):
        experiment_cli.main("mnist", ["--name", "roar_test", "--n_epochs"])
    # The run is placed first: bad input ends it FAILED, naming the bad value.
    assert launched["places"] == [("mnist-roar_test", "quick · roar_test")]
    assert launched["executions"] == []


# --------------------------------------------------------------------------- _resume


@pytest.fixture()
def resuming(monkeypatch):
    seen: dict = {"terminated": [], "executions": [], "tags": [], "runs": [], "checks": []}
    seen["status"] = "KILLED"
    resolved = Resolved("resolved-config", {}, {})
    seen["resolved"] = resolved

    def check_resumable(run_id, identity, differ):
        seen["checks"].append((run_id, identity, differ))
        if isinstance(seen["status"], BaseException):
            raise seen["status"]
        return seen["status"]

    class Tracker:
        def __init__(self, run_id):
            self.run_id = run_id

        def set_tags(self, tags):
            seen["tags"].append((self.run_id, dict(tags)))

    @contextmanager
    def tracked_run(name, run_id):
        seen["runs"].append((name, run_id))
        yield "resumed-tracker"

    def execute(*args):
        seen["executions"].append(args)
        if "raise" in seen:
            raise seen["raise"]

    monkeypatch.setattr(experiment_cli, "check_resumable", check_resumable)

    def settings(request, overrides):
        seen["settings"] = (request, overrides)
        return resolved

    monkeypatch.setattr(experiment_cli, "settings", settings)
    monkeypatch.setattr(experiment_cli, "Tracker", Tracker)
    monkeypatch.setattr(experiment_cli, "tracked_run", tracked_run)
    monkeypatch.setattr(experiment_cli, "_execute", execute)
    monkeypatch.setattr(experiment_cli, "terminate_run", lambda *a: seen["terminated"].append(a))
    monkeypatch.setenv("MLFLOW_RUN_ID", "launcher-1")
    return seen


def _resume(extra=(), resume="abc", launched_run="launcher-1", name="roar_test"):
    request = _request(name=name, profile="quick")
    experiment_cli._resume(request, list(extra), resume, launched_run)  # noqa: SLF001
    return request


def test_a_resume_continues_the_run_and_ends_the_launched_run_with_its_outcome(resuming, capsys):
    import os

    request = _resume(["--n_epochs", "3"])
    assert "MLFLOW_RUN_ID" not in os.environ  # nothing may adopt the launcher's run
    assert resuming["settings"] == (request, {"n_epochs": "3"})
    ((run_id, identity, differ),) = resuming["checks"]
    assert run_id == "abc"
    assert identity == {"dataset": "mnist", "experiment": "roar_test", "profile": "quick"}
    assert differ.func is setting_differences and differ.args == ("resolved-config",)
    assert resuming["tags"] == [("launcher-1", {RESUMED_INTO_TAG: "abc"})]
    assert resuming["runs"] == [("quick · roar_test", "abc")]
    assert resuming["executions"] == [
        (request, {"n_epochs": "3"}, "resumed-tracker", "launcher-1", resuming["resolved"])
    ]
    assert resuming["terminated"] == [("launcher-1", "FINISHED", {RESUMED_INTO_TAG: "abc"})]
    assert capsys.readouterr().out == "[lfxai] resuming run abc (KILLED)\n"


def test_a_finished_run_is_left_alone(resuming, capsys):
    resuming["status"] = "FINISHED"
    _resume()
    assert resuming["executions"] == [] and resuming["runs"] == [] and resuming["tags"] == []
    assert resuming["terminated"] == [("launcher-1", "FINISHED", {RESUMED_INTO_TAG: "abc"})]
    assert capsys.readouterr().out == "[lfxai] run abc is already FINISHED: nothing to resume\n"


def test_a_refused_resume_ends_the_launched_run_failed_with_the_reason(resuming):
    resuming["status"] = ResumeRefused("resume_run_id 'abc': no such run")
    with pytest.raises(ResumeRefused):
        _resume()
    assert resuming["executions"] == []
    assert resuming["terminated"] == [
        (
            "launcher-1",
            "FAILED",
            {RESUMED_INTO_TAG: "abc", ERROR_TAG: "ResumeRefused: resume_run_id 'abc': no such run"},
        )
    ]


def test_bad_overrides_refuse_the_resume_before_any_check(resuming):
    with pytest.raises(ConfigError):
        _resume(["stray"])
    assert resuming["checks"] == []
    (terminated,) = resuming["terminated"]
    assert terminated[1] == "FAILED" and terminated[2][ERROR_TAG].startswith(
        "ConfigError: unexpected argument 'stray'"
    )


@pytest.mark.parametrize("stop", [Stopped(signal.SIGTERM), KeyboardInterrupt()])
def test_a_stopped_resume_ends_the_launched_run_killed(resuming, stop):
    resuming["raise"] = stop
    with pytest.raises(type(stop)):
        _resume()
    assert resuming["terminated"] == [("launcher-1", "KILLED", {RESUMED_INTO_TAG: "abc"})]


def test_a_failed_resume_ends_the_launched_run_failed(resuming):
    resuming["raise"] = RuntimeError("diverged")
    with pytest.raises(RuntimeError):
        _resume()
    assert resuming["terminated"] == [
        ("launcher-1", "FAILED", {RESUMED_INTO_TAG: "abc", ERROR_TAG: "RuntimeError: diverged"})
    ]


def test_a_resume_outside_mlflow_run_has_no_launched_run_to_hide(resuming, monkeypatch):
    monkeypatch.delenv("MLFLOW_RUN_ID")
    _resume(launched_run=None)
    assert len(resuming["executions"]) == 1 and resuming["terminated"] == []


@pytest.mark.parametrize("launched_run", [None, "abc"])
def test_without_a_separate_launched_run_no_other_run_is_touched(resuming, launched_run):
    _resume(launched_run=launched_run)
    assert resuming["terminated"] == [] and resuming["tags"] == []
    assert resuming["executions"][0][3] is None


def test_an_experiment_that_cannot_resume_is_refused_before_any_check(resuming):
    with pytest.raises(ResumeRefused) as error:
        _resume(name="consistency_features")
    assert str(error.value) == (
        "resume_run_id abc: consistency_features cannot resume (it would train, register and "
        "log its results a second time): nothing was changed; start a new run instead "
        "(resumable experiments of mnist: ['roar_test'])"
    )
    assert resuming["checks"] == []
    assert resuming["terminated"][0][1] == "FAILED"


def test_which_experiments_may_resume():
    experiment_cli._check_resumable_experiment("mnist", "roar_test", "abc")  # noqa: SLF001
    with pytest.raises(ResumeRefused, match=r"resumable experiments of ecg5000: \[\]\)$"):
        experiment_cli._check_resumable_experiment("ecg5000", "consistency_examples", "x")  # noqa: SLF001
    with pytest.raises(ConfigError, match="unknown experiment 'nope'"):
        experiment_cli._check_resumable_experiment("mnist", "nope", "x")  # noqa: SLF001


def test_the_help_says_what_each_option_does():
    text = " ".join(experiment_cli._parser("mnist").format_help().split())  # noqa: SLF001
    assert (
        "VERBOSE] Run one mnist experiment; other --key value pairs override settings. options:"
        in text
    )
    assert "--resume_run_id RESUME_RUN_ID continue this (interrupted) run instead" in text
    assert "--verbose VERBOSE true: MLflow's INFO chatter too (default: LFXAI_VERBOSE)" in text
