"""Where settings come from: the configs/ folder, the YAML files and how profiles compose."""

from __future__ import annotations

from pathlib import Path

import pytest

import lfxai
from lfxai.config import ConfigError, config_dir, load_profile
from tests.config_cases import raised


def _write_configs(folder, text: str, dataset: str = "toy") -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{dataset}.yaml").write_text(text)


def test_config_dir_is_the_checkout_s_configs_unless_the_environment_says(tmp_path, monkeypatch):
    monkeypatch.delenv("LFXAI_CONFIG_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # the checkout's configs/, not the working directory's
    assert config_dir() == Path(lfxai.__file__).resolve().parents[1] / "configs"
    monkeypatch.setenv("LFXAI_CONFIG_DIR", str(tmp_path))
    assert config_dir() == tmp_path
    missing = tmp_path / "missing"
    monkeypatch.setenv("LFXAI_CONFIG_DIR", str(missing))
    # The variable wins outright: no fallback to the checkout when it names no folder.
    with pytest.raises(ConfigError, match=rf"no configs/ folder at \['{missing}'\]") as error:
        config_dir()
    assert str(error.value).endswith(
        "run experiments from the project checkout (`mlflow run .`) or set LFXAI_CONFIG_DIR"
    )


def test_a_dataset_without_a_config_file_names_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("LFXAI_CONFIG_DIR", str(tmp_path))
    with pytest.raises(
        ConfigError, match=rf"no configuration file for dataset 'svhn' at {tmp_path}"
    ):
        load_profile("svhn", "consistency_features", "paper")


def test_profiles_compose_in_the_documented_order(tmp_path, monkeypatch):
    """defaults.paper < experiment.paper < defaults.<profile> < experiment.<profile>."""
    _write_configs(
        tmp_path,
        """
defaults:
  paper: {a: 1, b: 1, c: 1, d: 1}
  quick: {c: 3, d: 3}
exp:
  paper: {b: 2, c: 2, d: 2}
  quick: {d: 4}
other:
  paper: {e: 5}
""",
    )
    monkeypatch.setenv("LFXAI_CONFIG_DIR", str(tmp_path))
    assert load_profile("toy", "exp", "paper") == {"a": 1, "b": 2, "c": 2, "d": 2}
    assert load_profile("toy", "exp", "quick") == {"a": 1, "b": 2, "c": 3, "d": 4}
    # A profile a section does not mention falls back to its paper values.
    assert load_profile("toy", "exp", "smoke") == {"a": 1, "b": 2, "c": 2, "d": 2}
    assert load_profile("toy", "other", "quick") == {"a": 1, "b": 1, "c": 3, "d": 3, "e": 5}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "exp:\n  paper: {a: 1}\n",
            r"no configuration for experiment 'nope' in toy.yaml; "
            r"valid choices: \['exp'\]",
        ),
        ("", r"no configuration for experiment 'nope' in toy.yaml; valid choices: \[\]"),
        (
            "defaults:\n  huge: {a: 1}\nnope:\n  paper: {}\n",
            r"toy.yaml: section 'defaults' has unknown profiles \['huge'\]; valid: \['paper'",
        ),
        (
            "nope:\n  paper: {}\n  tiny: {}\n",
            r"toy.yaml: section 'nope' has unknown profiles \['tiny'\]",
        ),
    ],
)
def test_bad_config_files_name_the_file_the_section_and_the_choices(
    tmp_path, monkeypatch, text, message
):
    _write_configs(tmp_path, text)
    monkeypatch.setenv("LFXAI_CONFIG_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=message):
        load_profile("toy", "nope", "paper")


def test_empty_sections_are_empty_profiles(tmp_path, monkeypatch):
    _write_configs(tmp_path, "defaults:\nexp:\n  paper:\n  quick: {a: 2}\n")
    monkeypatch.setenv("LFXAI_CONFIG_DIR", str(tmp_path))
    assert load_profile("toy", "exp", "paper") == {}
    assert load_profile("toy", "exp", "quick") == {"a": 2}


def test_an_installed_package_reads_the_working_directory_s_configs(tmp_path, monkeypatch):
    """Without configs/ beside the package (a non-editable install), ./configs is used."""
    monkeypatch.delenv("LFXAI_CONFIG_DIR", raising=False)
    site = tmp_path / "site-packages"
    monkeypatch.setattr(lfxai.config, "__file__", str(site / "lfxai" / "config.py"))
    checkout = tmp_path / "checkout"
    (checkout / "configs").mkdir(parents=True)
    monkeypatch.chdir(checkout)
    assert config_dir() == Path.cwd() / "configs"
    monkeypatch.chdir(tmp_path)
    assert raised(config_dir).startswith(
        f"no configs/ folder at {[str(site.resolve() / 'configs'), str(Path.cwd() / 'configs')]}:"
    )
