"""Shared experiment pieces: the data set's files are checked, and a repair is recorded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lfxai.config import ConfigError, build_config, load_profile
from lfxai.data import mnist
from lfxai.data.provision import sha256_bytes
from lfxai.experiments.common import load_splits
from lfxai.experiments.registry import get_experiment
from lfxai.plugins import get_dataset
from lfxai.plugins.base import check_data_dir
from lfxai.tracking import tracked_run


def test_only_the_default_data_folder_may_be_missing(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    check_data_dir("data", "mnist")  # created and provisioned on first use, as before
    check_data_dir("./data", "mnist")
    check_data_dir(tmp_path, "mnist")
    with pytest.raises(ConfigError, match=r"'datta' does not exist.*provision mnist --data_dir"):
        check_data_dir("datta", "mnist")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is not a folder"):
        check_data_dir(tmp_path / "file", "mnist")
    assert not (tmp_path / "data").exists() and not (tmp_path / "datta").exists()


@pytest.mark.data
def test_a_repaired_data_file_is_recorded_on_the_run(
    mlflow_store, data_dir, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    real = mnist.raw_dir(data_dir / "mnist")
    copy = mnist.raw_dir(tmp_path / "data" / "mnist")
    shutil.copytree(real, copy)
    bad = copy / "t10k-labels-idx1-ubyte"
    bad.write_bytes(b"\0" * 8)

    def mirror(target: Path) -> None:  # stands in for torchvision's download, offline
        shutil.copyfile(real / bad.name, target / bad.name)

    monkeypatch.setattr(mnist, "_download_torchvision", mirror)
    schema = get_experiment("mnist", "consistency_features").schema
    values = load_profile("mnist", "consistency_features", "smoke")
    config = build_config(schema, values, {"data_dir": str(tmp_path / "data"), "n_train": "10"})
    with tracked_run("repair") as tracker:
        splits = load_splits(get_dataset("mnist"), config, tracker)
        tags = tracker.tags()
    assert len(splits.train) == 10
    assert tags["lfxai.data_source"] == "torchvision"
    expected = mnist.MNIST_SHA256[bad.name]
    assert tags["lfxai.data_repaired"] == (
        f"{bad}: sha256 {sha256_bytes(bytes(8))} (8 bytes), expected {expected}"
    )
