"""``python -m lfxai provision``: which data sets, where, one line each, exit 1 on a failure."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from lfxai.cli import data as data_cli


class _Plugin:
    """A data set's plugin that records where it was asked to provision."""

    def __init__(self, name: str, calls: list, fail: str | None = None) -> None:
        self.name, self.calls, self.fail = name, calls, fail

    def root(self, data_dir: Path) -> Path:
        self.calls.append(("root", self.name, data_dir))
        return data_dir / f"{self.name}-root"

    def provision_root(self, root: Path):
        self.calls.append(("provision", self.name, root))
        if self.fail:
            raise RuntimeError(self.fail)
        return SimpleNamespace(path=root / "files", source=f"{self.name}-source")


@pytest.fixture()
def plugins(monkeypatch):
    calls: list = []
    registry = {
        "alpha": _Plugin("alpha", calls),
        "beta": _Plugin("beta", calls, fail="no network\nretry later"),
        "gamma": _Plugin("gamma", calls),
    }
    monkeypatch.setattr(data_cli, "DATASETS", registry)
    monkeypatch.setattr(data_cli.logging, "basicConfig", lambda **kwargs: None)
    return calls


LINE = r"{name}: {path} \(source: {name}-source, \d+\.\d s\)"


def test_the_data_sets_named_are_provisioned_below_data_dir_in_the_order_given(
    plugins, tmp_path, capsys
):
    assert data_cli.main(["provision", "gamma", "alpha", "--data_dir", str(tmp_path)]) == 0
    assert plugins == [
        ("root", "gamma", tmp_path),
        ("provision", "gamma", tmp_path / "gamma-root"),
        ("root", "alpha", tmp_path),
        ("provision", "alpha", tmp_path / "alpha-root"),
    ]
    assert isinstance(plugins[0][2], Path)  # --data_dir arrives as a path
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 2 and err == ""
    assert re.fullmatch(LINE.format(name="gamma", path=tmp_path / "gamma-root" / "files"), lines[0])
    assert re.fullmatch(LINE.format(name="alpha", path=tmp_path / "alpha-root" / "files"), lines[1])
    seconds = [float(line.rsplit(", ", 1)[1].removesuffix(" s)")) for line in lines]
    assert all(0 <= s < 60 for s in seconds)  # the time each took, not a clock reading


def test_no_data_set_named_provisions_all_into_data_and_a_failure_exits_1(plugins, capsys):
    assert data_cli.main(["provision"]) == 1
    assert [c[1] for c in plugins if c[0] == "provision"] == ["alpha", "beta", "gamma"]
    assert {c[2] for c in plugins if c[0] == "root"} == {Path("data")}  # DEFAULT_DATA_DIR
    out, err = capsys.readouterr()
    assert err == "beta: FAILED\nno network\nretry later\n"
    assert [line.split(":")[0] for line in out.splitlines()] == ["alpha", "gamma"]


def test_one_failure_is_enough_for_exit_1(plugins, capsys):
    assert data_cli.main(["provision", "beta"]) == 1
    assert capsys.readouterr() == ("", "beta: FAILED\nno network\nretry later\n")
    assert data_cli.main(["provision", "alpha"]) == 0


def test_an_unknown_data_set_is_refused_naming_it_and_the_known_ones(plugins, capsys):
    with pytest.raises(SystemExit) as exit_:
        data_cli.main(["provision", "zeta", "alpha", "omega"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m lfxai")
    assert err.rstrip("\n").endswith(
        "error: unknown data set(s) ['omega', 'zeta']; known: ['alpha', 'beta', 'gamma']"
    )
    assert plugins == []  # nothing provisioned


def test_a_command_is_required(plugins, capsys):
    with pytest.raises(SystemExit) as exit_:
        data_cli.main([])
    assert exit_.value.code == 2
    assert "required: command" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        data_cli.main(["fetch"])
    assert "invalid choice: 'fetch'" in capsys.readouterr().err


def test_the_help_names_the_data_sets(plugins, capsys):
    with pytest.raises(SystemExit) as exit_:
        data_cli.main(["provision", "--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "any of alpha, beta, gamma" in out and "--data_dir DATA_DIR" in out
    with pytest.raises(SystemExit):
        data_cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("usage: python -m lfxai ")
    assert (
        "{provision} ... Command line: provision data sets ahead of the experiments. positional"
        in out
    )
    assert "{provision} provision fetch or convert data sets into place options:" in out


def test_logging_is_set_up_for_info_lines(monkeypatch, plugins):
    seen = []
    monkeypatch.setattr(data_cli.logging, "basicConfig", lambda **kwargs: seen.append(kwargs))
    data_cli.main(["provision", "alpha"])
    assert seen == [{"level": 20, "format": "%(levelname)s %(name)s: %(message)s"}]
