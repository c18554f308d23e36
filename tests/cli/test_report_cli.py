"""``python -m entrypoints.report`` with stand-ins: its options, the store it insists on,
the run it logs (tags, description) and the folder it writes."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from lfxai.cli import report as report_cli
from lfxai.config import ConfigError
from lfxai.tracking import NOTE_TAG

# --------------------------------------------------------------------------- options


def test_the_options_and_their_defaults():
    args = report_cli._parser().parse_args([])  # noqa: SLF001
    assert vars(args) == {"profile": "paper", "out": "", "run_ids": "none", "log": "true"}
    args = report_cli._parser().parse_args(  # noqa: SLF001
        ["--profile", "smoke", "--out", "r", "--run_ids", "a,b", "--log", "false"]
    )
    assert vars(args) == {"profile": "smoke", "out": "r", "run_ids": "a,b", "log": "false"}
    assert report_cli._parser().prog == "python -m entrypoints.report"  # noqa: SLF001
    assert report_cli.EXPERIMENT == "report" and report_cli.MAX_TAG == 5000
    assert report_cli.EXIT_BAD_INPUT == 2
    assert report_cli.__all__ == ["EXIT_BAD_INPUT", "main", "run"]


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("TRUE", True), ("false", False), ("False", False)]
)
def test_a_flag_is_true_or_false(value, expected):
    assert report_cli._flag("log", value) is expected  # noqa: SLF001


@pytest.mark.parametrize("value", ["yes", "1", "", "no", "truefalse"])
def test_any_other_flag_value_is_refused_naming_it_and_the_choices(value):
    with pytest.raises(ConfigError) as error:
        report_cli._flag("log", value)  # noqa: SLF001
    assert str(error.value) == f"log={value!r}; valid choices: ['true', 'false']"


# --------------------------------------------------------------------------- check_store


def test_a_sqlite_store_must_exist(tmp_path):
    missing = tmp_path / "no" / "mlflow.db"
    uri = f"sqlite:///{missing}"
    with pytest.raises(ConfigError) as error:
        report_cli.check_store(uri)
    assert str(error.value) == (
        f"no MLflow store at {missing} (MLFLOW_TRACKING_URI={uri}); "
        "point MLFLOW_TRACKING_URI at the store of the runs"
    )
    existing = tmp_path / "mlflow.db"
    existing.write_bytes(b"")
    report_cli.check_store(f"sqlite:///{existing}")  # no error
    report_cli.check_store("http://localhost:5000")  # a server: not checked here
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(ConfigError):
        report_cli.check_store(f"sqlite:///{tmp_path / 'dir.db'}")  # a folder is no store


def test_a_relative_store_is_named_by_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as error:
        report_cli.check_store("sqlite:///mlflow.db")
    assert str(error.value).startswith(f"no MLflow store at {tmp_path / 'mlflow.db'} (")


def test_the_uri_in_the_message_is_redacted(tmp_path):
    with pytest.raises(ConfigError) as error:
        report_cli.check_store(f"sqlite:///{tmp_path}/x.db?password=hunter2")
    assert "hunter2" not in str(error.value)


# --------------------------------------------------------------------------- _describe


class _Tracker:
    run_id = "report-run"

    def __init__(self):
        self.tags: dict[str, str] = {}
        self.folders: list[Path] = []

    def set_tags(self, tags):
        self.tags.update(tags)

    def log_folder(self, folder):
        self.folders.append(folder)
        self.logged = sorted(p.name for p in Path(folder).iterdir())


def _run(run_id, experiment_id, name=None):
    tags = {} if name is None else {"mlflow.runName": name}
    return SimpleNamespace(run_id=run_id, experiment_id=experiment_id, tags=tags)


class _Entry:
    def __init__(self, name, runs):
        self.name, self.runs = name, runs

    def command(self):
        return f"mlflow run . -e x -P name={self.name}"


def _report():
    present = _Entry("mnist-roar_test", [_run("r1", "3", "quick · roar_test #1"), _run("r2", "3")])
    missing = _Entry("ecg5000-consistency_features", [])
    return SimpleNamespace(
        profile="quick",
        sources=["r1", "r2"],
        missing=[missing],
        entries=[present, missing],
    )


def test_the_report_run_lists_its_sources_and_links_each(tmp_path):
    tracker = _Tracker()
    report_cli._describe(_report(), tracker)  # noqa: SLF001
    assert tracker.tags == {
        "lfxai.report.profile": "quick",
        "lfxai.report.sources": "r1,r2",
        "lfxai.report.missing": "ecg5000-consistency_features",
        "lfxai.report.source.mnist-roar_test": "r1,r2",
        NOTE_TAG: "\n".join(
            [
                "Report of the **quick** profile (artifacts: `index.html`).",
                "",
                "- mnist-roar_test: [quick · roar_test #1](#/experiments/3/runs/r1)",
                "- mnist-roar_test: [r2](#/experiments/3/runs/r2)",
                "- ecg5000-consistency_features: missing "
                "(`mlflow run . -e x -P name=ecg5000-consistency_features`)",
            ]
        ),
    }


def test_the_tags_are_cut_to_mlflows_limit():
    many = [f"run{i:05d}" for i in range(2000)]
    entries = [_Entry(f"e{i:04d}", []) for i in range(1000)]
    report = SimpleNamespace(profile="paper", sources=many, missing=entries, entries=entries)
    tracker = _Tracker()
    report_cli._describe(report, tracker)  # noqa: SLF001
    assert tracker.tags["lfxai.report.sources"] == ",".join(many)[:5000]
    assert tracker.tags["lfxai.report.missing"] == ",".join(e.name for e in entries)[:5000]
    assert len(tracker.tags[NOTE_TAG]) == 5000
    assert tracker.tags[NOTE_TAG].startswith("Report of the **paper** profile")


# --------------------------------------------------------------------------- run


class _Built:
    def __init__(self, calls, profile, run_ids):
        self.calls, self.profile, self.run_ids = calls, profile, run_ids
        self.sources, self.missing, self.entries = ["r1"], [], []

    def write(self, folder):
        self.calls.append(("write", Path(folder).parent))
        (Path(folder) / "index.html").write_text(f"report {self.profile} {self.run_ids}")
        (Path(folder) / "figures").mkdir()
        (Path(folder) / "figures" / "a.png").write_bytes(b"png")


@pytest.fixture()
def stand_ins(monkeypatch):
    calls: list = []
    tracker = _Tracker()

    @contextmanager
    def placed_run(experiment, name):
        calls.append(("placed_run", experiment, name))
        yield tracker

    def build(reader, profile, run_ids):
        calls.append(("build", reader, profile, run_ids))
        return _Built(calls, profile, run_ids)

    monkeypatch.setattr(report_cli, "StoreReader", lambda: "reader")
    monkeypatch.setattr(report_cli, "build", build)
    monkeypatch.setattr(report_cli, "placed_run", placed_run)
    return SimpleNamespace(calls=calls, tracker=tracker)


def test_a_logged_report_is_a_run_of_experiment_report_and_is_copied_out(
    stand_ins, tmp_path, capsys
):
    out = tmp_path / "out"
    assert report_cli.run("smoke", out, ["a"], log=True) == out / "index.html"
    calls = stand_ins.calls
    assert calls[:2] == [
        ("placed_run", "report", "report · smoke"),
        ("build", "reader", "smoke", ["a"]),
    ]
    assert stand_ins.tracker.logged == ["figures", "index.html"]
    (staging,) = stand_ins.tracker.folders
    assert not staging.exists()  # the staging folder is removed
    assert staging.name.startswith("lfxai-report-") and staging != out
    assert (out / "index.html").read_text() == "report smoke ['a']"
    assert (out / "figures" / "a.png").read_bytes() == b"png"
    assert stand_ins.tracker.tags["lfxai.report.sources"] == "r1"
    assert capsys.readouterr().out == "[lfxai] report run report-run in experiment 'report'\n"


def test_an_out_folder_that_exists_is_written_into(stand_ins, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    assert report_cli.run("paper", tmp_path, [], log=False) == tmp_path / "index.html"
    assert (tmp_path / "keep.txt").read_text() == "mine"
    assert (tmp_path / "index.html").read_text() == "report paper []"


def test_an_unlogged_report_without_out_builds_and_writes_nothing_anywhere(
    stand_ins, tmp_path, capsys
):
    assert report_cli.run("paper", None, [], log=False) is None
    assert [c[0] for c in stand_ins.calls] == ["build", "write"]
    assert stand_ins.calls[0] == ("build", "reader", "paper", [])
    assert stand_ins.tracker.folders == [] and capsys.readouterr().out == ""


def test_a_staging_folder_already_gone_does_not_fail_the_report(stand_ins, monkeypatch):
    def write(self, folder):
        Path(folder).rmdir()  # e.g. a temporary-file cleaner got there first

    monkeypatch.setattr(_Built, "write", write)
    assert report_cli.run("paper", None, [], log=False) is None


def test_a_failed_build_leaves_no_staging_folder(stand_ins, monkeypatch, tmp_path):
    made = []
    real = report_cli.tempfile.mkdtemp

    def mkdtemp(prefix):
        made.append(Path(real(prefix=prefix, dir=tmp_path)))
        return str(made[-1])

    def build(reader, profile, run_ids):
        raise ConfigError("bad run ids")

    monkeypatch.setattr(report_cli.tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(report_cli, "build", build)
    with pytest.raises(ConfigError):
        report_cli.run("paper", tmp_path / "out", ["x"], log=True)
    assert len(made) == 1 and made[0].name.startswith("lfxai-report-") and not made[0].exists()
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- main


@pytest.fixture()
def launched(monkeypatch, tmp_path):
    """main() with launch() running the work at once and run() recorded."""
    seen: dict = {"runs": [], "profiles": []}

    def launch(work, launched_run, **kwargs):
        seen["launch"] = (launched_run, kwargs)
        work()
        return 0

    def run(profile, out, run_ids, log):
        seen["runs"].append((profile, out, run_ids, log))
        return None if out is None else out / "index.html"

    store = tmp_path / "mlflow.db"
    store.write_bytes(b"")
    monkeypatch.setattr(report_cli, "launch", launch)
    monkeypatch.setattr(report_cli, "run", run)
    monkeypatch.setattr(report_cli, "check_profile", seen["profiles"].append)
    monkeypatch.setattr(report_cli, "tracking_uri", lambda: f"sqlite:///{store}")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    return seen


def test_main_runs_the_report_with_its_options(launched, capsys):
    assert report_cli.main(["--profile", "smoke", "--out", "r", "--run_ids", " a, b ,,c "]) == 0
    assert launched["runs"] == [("smoke", Path("r"), ["a", "b", "c"], True)]
    assert launched["profiles"] == []  # a logged report checks the profile as it builds
    assert launched["launch"] == (
        None,
        {"launcher": None, "create_store": False, "record_system_metrics": False},
    )
    assert capsys.readouterr().out == f"[lfxai] report: {Path('r') / 'index.html'}\n"
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"


@pytest.mark.parametrize(
    ("run_ids", "expected"),
    [("none", []), ("NONE", []), (" None ", []), ("", []), (",", []), ("none,a", ["none", "a"])],
)
def test_no_run_ids_means_the_newest_runs(launched, run_ids, expected):
    assert report_cli.main(["--run_ids", run_ids]) == 0
    assert launched["runs"] == [("paper", None, expected, True)]


def test_an_unlogged_report_checks_its_profile_first(launched, capsys):
    assert report_cli.main(["--log", "FALSE", "--profile", "quick"]) == 0
    assert launched["profiles"] == ["quick"]
    assert launched["runs"] == [("quick", None, [], False)]
    assert capsys.readouterr().out == ""  # no out folder: nothing to point at


def test_under_mlflow_run_the_launched_run_is_the_launcher(launched, monkeypatch):
    monkeypatch.setenv("MLFLOW_RUN_ID", "launched-1")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true")
    assert report_cli.main([]) == 0
    assert launched["launch"] == (
        "launched-1",
        {"launcher": "launched-1", "create_store": False, "record_system_metrics": False},
    )
    assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "true"  # the user's choice


def test_a_bad_flag_or_a_missing_store_runs_nothing(launched, monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match=r"log='maybe'"):
        report_cli.main(["--log", "maybe"])
    monkeypatch.setattr(report_cli, "tracking_uri", lambda: f"sqlite:///{tmp_path}/none.db")
    with pytest.raises(ConfigError, match="no MLflow store at"):
        report_cli.main(["--log", "false"])
    assert launched["runs"] == [] and launched["profiles"] == []
    assert not (tmp_path / "none.db").exists()


def test_the_argv_default_is_the_command_line(launched, monkeypatch):
    monkeypatch.setattr(report_cli.sys, "argv", ["report.py", "--profile", "smoke"])
    assert report_cli.main() == 0
    assert launched["runs"] == [("smoke", None, [], True)]


def test_the_help_says_what_each_option_does():
    text = " ".join(report_cli._parser().format_help().split())  # noqa: SLF001
    assert "[--log LOG] The paper regenerated from the store. options:" in text
    assert "--profile PROFILE one of ['paper', 'quick', 'smoke']" in text
    assert "--out OUT also write the report into this folder" in text
    assert "--run_ids RUN_IDS comma-separated runs to report on" in text
    assert "--log LOG log the report as a run (true/false)" in text
