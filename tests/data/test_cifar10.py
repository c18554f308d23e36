"""CIFAR-10: generated fixtures in the real on-disk format, digest checks, offline errors."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import lfxai.experiments  # noqa: F401  (fills the registry)
from lfxai.config import ConfigError, build_config, load_profile
from lfxai.data import cifar10
from lfxai.data import provision as prov
from lfxai.experiments.registry import get_experiment
from lfxai.plugins import get_dataset


def _flip_byte(path: Path, offset: int = 200) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_generated_fixture_loads_with_labels_and_shapes(tmp_path):
    folder = cifar10.write_cifar10(tmp_path, n_train=23, n_test=7, seed=1)
    assert folder == tmp_path / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*cifar10.FILES, cifar10.MANIFEST])
    provisioned = cifar10.provision_cifar10(tmp_path, download=False)
    assert provisioned.source == "fixture" and provisioned.repaired == ()
    train = cifar10.cifar10_split(tmp_path, train=True)
    test = cifar10.cifar10_split(tmp_path, train=False)
    assert train.x.shape == (23, 3, 32, 32) and test.x.shape == (7, 3, 32, 32)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert float(train.x.min()) >= 0 and float(train.x.max()) <= 1
    assert set(train.y.tolist()) <= set(range(10)) and len(set(train.y.tolist())) == 10
    # A prefix, in file order; the five training batches together hold all 23 images.
    head = cifar10.cifar10_split(tmp_path, train=True, size=5)
    torch.testing.assert_close(head.x, train.x[:5], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"size must be in 1\.\.7"):
        cifar10.cifar10_split(tmp_path, train=False, size=8)
    # Same seed, same bytes: the fixture is reproducible.
    again = cifar10.write_cifar10(tmp_path / "again", n_train=23, n_test=7, seed=1)
    for name in cifar10.FILES:
        assert (again / name).read_bytes() == (folder / name).read_bytes()


def test_torchvision_reads_the_generated_files_as_we_do(tmp_path, monkeypatch):
    """The fixture is the real format: torchvision's own reader sees the same images."""
    from torchvision.datasets import CIFAR10, cifar

    cifar10.write_cifar10(tmp_path, n_train=12, n_test=4, seed=2)
    # torchvision would refuse the fixture's (non-official) md5; its parsing is what we test.
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5=None: True)
    for train in (True, False):
        theirs = CIFAR10(str(tmp_path), train=train, download=False)
        ours = cifar10.cifar10_split(tmp_path, train=train)
        images = torch.from_numpy(theirs.data).permute(0, 3, 1, 2).float() / 255  # HWC -> CHW
        torch.testing.assert_close(ours.x, images, rtol=0, atol=0)
        assert ours.y.tolist() == list(theirs.targets)
    assert theirs.classes == list(cifar10.LABEL_NAMES)


def test_corrupt_fixture_file_is_refused_with_file_and_digests(tmp_path):
    folder = cifar10.write_cifar10(tmp_path, n_train=10, n_test=5)
    expected = json.loads((folder / cifar10.MANIFEST).read_text())["sha256"]["data_batch_3"]
    _flip_byte(folder / "data_batch_3")
    found = hashlib.sha256((folder / "data_batch_3").read_bytes()).hexdigest()
    with pytest.raises(RuntimeError) as error:
        cifar10.cifar10_split(tmp_path, train=True)
    message = str(error.value)
    assert str(folder / "data_batch_3") in message
    assert f"sha256 {found}" in message and f"expected {expected}" in message
    assert "data_batch_1" not in message  # only the bad file is named


def test_truncated_file_is_refused_even_when_its_digest_is_recorded(tmp_path):
    """A manifest rewritten to match a broken file: the structure check still refuses it."""
    folder = cifar10.write_cifar10(tmp_path, n_train=10, n_test=5)
    path = folder / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    manifest = json.loads((folder / cifar10.MANIFEST).read_text())
    manifest["sha256"]["test_batch"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / cifar10.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"test_batch is not a readable CIFAR-10 batch"):
        cifar10.cifar10_split(tmp_path, train=False)
    (folder / cifar10.MANIFEST).write_text("{not json")
    with pytest.raises(RuntimeError, match="is not a valid fixture manifest"):
        cifar10.provision_cifar10(tmp_path, download=False)


def test_files_without_a_manifest_are_held_to_torchvision_s_md5(tmp_path):
    folder = cifar10.write_cifar10(tmp_path, n_train=10, n_test=5)
    (folder / cifar10.MANIFEST).unlink()
    with pytest.raises(RuntimeError) as error:
        cifar10.provision_cifar10(tmp_path, download=False)
    message = str(error.value)
    official = cifar10.official_md5()
    assert official["data_batch_1"] == "c99cafc152244af753f735de768cd75f"  # torchvision's list
    found = cifar10.md5_file(folder / "data_batch_1")
    assert f"{folder / 'data_batch_1'}: md5 {found}" in message
    assert f"expected {official['data_batch_1']}" in message


def test_offline_without_files_says_where_to_put_them(tmp_path, monkeypatch):
    def offline(folder: Path) -> None:
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(cifar10, "_download_torchvision", offline)
    with pytest.raises(RuntimeError) as error:
        cifar10.provision_cifar10(tmp_path / "cifar10")
    message = str(error.value)
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    assert "\n" not in message  # one line
    assert f"CIFAR-10 is not available under {folder}: missing: data_batch_1, " in message
    assert "([Errno 101] Network is unreachable)" in message
    assert "there is no offline source" in message
    assert cifar10.ARCHIVE_URL in message
    assert "data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5" in message


def test_offline_without_files_leaves_no_folder_and_fails_in_one_line(tmp_path, monkeypatch):
    """The real download path, offline: torchvision's download fails inside the scratch
    folder; the error is one line and the folders made for the download are gone again."""
    from urllib.error import URLError

    from torchvision.datasets import CIFAR10

    def offline(self) -> None:
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(CIFAR10, "download", offline)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with pytest.raises(ConfigError) as error:  # how the experiments (and the runner) see it
        get_dataset("cifar10").provision(data_dir)
    message = str(error.value)
    assert "\n" not in message and "Name or service not known" in message
    assert f"--data_dir {data_dir}`" in message
    assert list(data_dir.iterdir()) == []  # no empty cifar10/ left behind
    with pytest.raises(prov.DataUnavailable):  # a fresh root with missing parents: all removed
        cifar10.provision_cifar10(tmp_path / "new" / "cifar10")
    assert not (tmp_path / "new").exists()


def test_a_corrupt_official_file_is_replaced_by_a_download_and_reported(tmp_path, monkeypatch):
    good = cifar10.write_cifar10(tmp_path / "good", n_train=10, n_test=5)
    digests = {name: cifar10.md5_file(good / name) for name in cifar10.FILES}
    monkeypatch.setattr(cifar10, "official_md5", lambda: digests)  # "official" = these files
    folder = cifar10.batches_dir(tmp_path / "root")
    shutil.copytree(good, folder)
    (folder / cifar10.MANIFEST).unlink()
    _flip_byte(folder / "data_batch_2")

    def download(target: Path) -> None:
        for name in cifar10.FILES:
            shutil.copyfile(good / name, target / name)

    monkeypatch.setattr(cifar10, "_download_torchvision", download)
    provisioned = cifar10.provision_cifar10(tmp_path / "root")
    assert provisioned.source == "torchvision"
    assert len(provisioned.repaired) == 1 and "data_batch_2: md5" in provisioned.repaired[0]
    assert cifar10.provision_cifar10(tmp_path / "root", download=False).source == "present"


def test_generated_images_show_their_class():
    """Same-class images are closer than other-class ones: similarity rates can beat chance."""
    images, labels = cifar10.generated_images(200, np.random.default_rng(0))
    colours = images.reshape(200, 3, -1).mean(axis=2)
    dist = np.linalg.norm(colours[:, None] - colours[None], axis=2)
    np.fill_diagonal(dist, np.inf)
    assert (labels[dist.argmin(axis=1)] == labels).mean() > 0.9


def _config(experiment: str, **overrides: str):
    values = load_profile("cifar10", experiment, "smoke")
    return build_config(get_experiment("cifar10", experiment).schema, values, overrides)


def test_plugin_refuses_settings_its_model_cannot_run():
    plugin = get_dataset("cifar10")
    for experiment in plugin.experiments:
        plugin.check_config(_config(experiment))  # every profile's own settings pass
    with pytest.raises(ConfigError, match=r"\['InfluenceFunctions'\] do not apply.*SimplEx"):
        plugin.check_config(
            _config("consistency_examples", example_methods="InfluenceFunctions,DKNN")
        )
    with pytest.raises(ConfigError, match=r"pretext 'denoising' does not apply"):
        plugin.check_config(_config("consistency_features", pretext="denoising"))
    with pytest.raises(ConfigError, match=r"dim_latent=128 does not fit.*\[512\]"):
        plugin.check_config(_config("consistency_features", dim_latent="128"))
    with pytest.raises(ConfigError, match=r"pretrained=true reuses only the registered encoder"):
        _config("consistency_examples", pretrained="true", example_methods="TracIn")


def test_plugin_baseline_is_the_paper_s_blur_and_files_carry_their_digests(tmp_path):
    from torchvision.transforms.v2.functional import gaussian_blur

    plugin = get_dataset("cifar10")
    cifar10.write_cifar10(tmp_path / "cifar10", n_train=10, n_test=5)
    splits = plugin.load(str(tmp_path), "standard", seed=0, n_train=None, n_test=3)
    assert splits.explain is splits.test and len(splits.test) == 3
    blurred = plugin.baseline(splits.train)(splits.test.x)
    reference = gaussian_blur(splits.test.x, [21, 21], [5.0, 5.0])
    torch.testing.assert_close(blurred, reference, rtol=0, atol=1e-5)
    files = plugin.provisioned_files(tmp_path)
    manifest = json.loads(
        (cifar10.batches_dir(tmp_path / "cifar10") / "lfxai-fixture.json").read_text()
    )
    assert {p.name: d for p, d in files.items()} == manifest["sha256"]


def test_provision_offline_says_it_once_without_traceback_or_folder(
    tmp_path, monkeypatch, capsys, caplog
):
    """`python -m lfxai provision cifar10` offline: one FAILED entry, the reason said once."""
    from urllib.error import URLError

    from lfxai.cli.data import main

    def offline(folder: Path) -> None:
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(cifar10, "_download_torchvision", offline)
    caplog.set_level("INFO")
    assert main(["provision", "cifar10", "--data_dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cifar10: FAILED\nCIFAR-10 is not available under ")
    assert len(err.strip().splitlines()) == 2 and "Traceback" not in err
    said = [r for r in caplog.records if "Name or service not known" in r.getMessage()]
    assert said == []  # the reason is in the error line, not repeated in a log line
    assert err.count("Name or service not known") == 1
    assert list(tmp_path.iterdir()) == []  # no empty cifar10/ left behind
