"""CIFAR-10: generated fixtures in the real on-disk format, digest checks, offline errors."""

from __future__ import annotations

import hashlib
import json
import logging
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
    assert message.startswith(f"CIFAR-10 fixture under {folder} does not match its manifest ")
    assert message.endswith(
        "to fix: regenerate it (lfxai.data.cifar10.write_cifar10), or delete the folder"
    )


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
    with pytest.raises(RuntimeError, match="is not a valid fixture manifest") as error:
        cifar10.provision_cifar10(tmp_path, download=False)
    assert str(error.value).endswith(
        "; delete it to check the folder against the official digests, or regenerate the fixture"
    )


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


def test_a_corrupt_official_file_is_replaced_by_a_download_and_reported(
    tmp_path, monkeypatch, caplog
):
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
    with caplog.at_level(logging.WARNING, logger="lfxai.data.cifar10"):
        provisioned = cifar10.provision_cifar10(tmp_path / "root")
    assert provisioned.source == "torchvision" and provisioned.path == folder
    assert len(provisioned.repaired) == 1 and "data_batch_2: md5" in provisioned.repaired[0]
    assert f"CIFAR-10 files failed their md5, replaced: {provisioned.repaired[0]}" in caplog.text
    assert cifar10.provision_cifar10(tmp_path / "root", download=False).source == "present"
    (folder / "test_batch").unlink()
    with pytest.raises(prov.DataUnavailable) as error:
        cifar10.provision_cifar10(tmp_path / "root", download=False)
    message = str(error.value)
    assert f"CIFAR-10 is not available under {folder}: missing: test_batch; " in message
    assert "; tried: nothing (download=False); there is no offline source; " in message
    assert message.endswith(
        "(each file must match torchvision's md5: "
        "torchvision.datasets.CIFAR10.train_list/test_list/meta)"
    )


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


class _FakeTorchvisionCIFAR10:
    """Stands in for torchvision's CIFAR10 (no network): its integrity lists are the
    generated files' md5 and its download copies them into ``<root>/cifar-10-batches-py``,
    with ``damaged`` flipped after torchvision's own check (what our check is for)."""

    source: Path
    damaged: str | None = None
    calls: list  # each test's own (the fixture makes a fresh subclass)

    def __init__(self, root, train, download):
        import socket

        type(self).calls.append((Path(root), train, download, socket.getdefaulttimeout()))
        target = Path(root) / cifar10.BASE_FOLDER
        shutil.copytree(self.source, target)
        if self.damaged:
            _flip_byte(target / self.damaged)


@pytest.fixture
def fake_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets

    good = cifar10.write_cifar10(tmp_path / "good", n_train=10, n_test=5)
    (good / cifar10.MANIFEST).unlink()
    md5 = {name: cifar10.md5_file(good / name) for name in cifar10.FILES}
    fake = type("CIFAR10", (_FakeTorchvisionCIFAR10,), {"source": good, "calls": []})
    fake.train_list = [[name, md5[name]] for name in cifar10.TRAIN_FILES]
    fake.test_list = [[cifar10.TEST_FILE, md5[cifar10.TEST_FILE]]]
    fake.meta = {"filename": cifar10.META_FILE, "md5": md5[cifar10.META_FILE]}
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake)
    return fake


def test_the_official_digests_are_torchvision_s_lists(fake_torchvision):
    digests = cifar10.official_md5()
    assert set(digests) == set(cifar10.FILES)
    assert digests[cifar10.META_FILE] == fake_torchvision.meta["md5"]
    assert digests["data_batch_3"] == fake_torchvision.train_list[2][1]


def test_a_download_lands_in_a_scratch_folder_with_a_timeout_then_moves_in(
    fake_torchvision, tmp_path
):
    import socket

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(3.0)
    try:
        provisioned = cifar10.provision_cifar10(tmp_path / "root")
        after = socket.getdefaulttimeout()
    finally:
        socket.setdefaulttimeout(previous)
    folder = tmp_path / "root" / cifar10.BASE_FOLDER
    assert provisioned.source == "torchvision" and provisioned.path == folder
    [(scratch, train, download, timeout)] = fake_torchvision.calls
    assert scratch.parent == folder and scratch.name.startswith(".torchvision-")
    assert (train, download, timeout) == (True, True, cifar10.DOWNLOAD_TIMEOUT_S)
    assert after == 3.0  # the caller's timeout is back
    assert sorted(p.name for p in folder.iterdir()) == sorted(cifar10.FILES)  # scratch gone
    for name in cifar10.FILES:
        assert (folder / name).read_bytes() == (fake_torchvision.source / name).read_bytes()


def test_a_download_that_fails_our_md5_is_not_moved_in(fake_torchvision, tmp_path):
    fake_torchvision.damaged = "data_batch_3"
    with pytest.raises(prov.DataUnavailable) as error:
        cifar10.provision_cifar10(tmp_path / "root")
    message = str(error.value)
    assert "downloaded files fail their md5: " in message
    assert f"{cifar10.BASE_FOLDER}/data_batch_3: md5 " in message
    assert not (tmp_path / "root").exists()  # nothing moved in, no folder left behind


def _batch(tmp_path: Path, entry: object) -> Path:
    import pickle

    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps(entry, protocol=2))
    return path


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ([1, 2], r"is not a CIFAR-10 batch \(a dict with 'data' and 'labels'\)"),
        ({"data": np.zeros((1, 3072), np.uint8)}, r"a dict with 'data' and 'labels'"),
        ({"labels": [1]}, r"a dict with 'data' and 'labels'"),
        ({"data": np.zeros((2, 3072), np.float32), "labels": [1, 2]}, r"data \(2, 3072\) is not"),
        ({"data": np.zeros((2, 3071), np.uint8), "labels": [1, 2]}, r"data \(2, 3071\) is not"),
        ({"data": [0] * 3072, "labels": [1]}, r"data None is not \(1, 3072\) uint8"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}, r"labels outside 0..9"),
        ({"data": np.zeros((2, 3072), np.uint8), "labels": [-1, 9]}, r"labels outside 0..9"),
    ],
)
def test_a_batch_of_another_form_is_refused_naming_what(entry, message, tmp_path):
    with pytest.raises(ValueError, match=message) as error:
        cifar10._read_batch(_batch(tmp_path, entry))  # noqa: SLF001
    assert str(error.value).startswith(str(tmp_path / "batch"))


def test_a_batch_with_labels_0_and_9_reads(tmp_path):
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    path = _batch(tmp_path, {"data": data, "labels": [0, 9]})
    images, labels = cifar10._read_batch(path)  # noqa: SLF001
    assert images.shape == (2, 3, 32, 32) and labels.tolist() == [0, 9]
    assert labels.dtype == np.int64 and np.array_equal(images.reshape(2, -1), data)


def test_the_generated_batches_have_the_official_keys_and_pickle_protocol(tmp_path):
    folder = cifar10.write_cifar10(tmp_path, n_train=6, n_test=2)
    raw = (folder / "data_batch_1").read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2, as the official (Python 2) files
    with open(folder / "data_batch_1", "rb") as handle:
        entry = prov.load_array_pickle(handle, encoding="latin1")
    assert set(entry) == {"batch_label", "labels", "data", "filenames"}
    assert entry["data"].shape == (len(entry["labels"]), 3072)
    assert entry["filenames"][0].startswith("generated_") and entry["filenames"][0].endswith(".png")


@pytest.mark.parametrize(("size", "ok"), [(1, True), (7, True), (0, False), (8, False)])
def test_a_split_s_size_is_between_1_and_its_length(size, ok, tmp_path):
    cifar10.write_cifar10(tmp_path, n_train=11, n_test=7)
    if ok:
        assert len(cifar10.cifar10_split(tmp_path, train=False, size=size).x) == size
    else:
        with pytest.raises(ValueError, match=f"size must be in 1..7, got {size}"):
            cifar10.cifar10_split(tmp_path, train=False, size=size)


def test_generated_images_have_their_class_s_colour_and_stripes():
    """Class c: colour 0.5 + 0.4 cos(2 pi (c / 10 + [0, 1/3, 2/3])) modulated by stripes
    0.75 + 0.25 cos(...) of 3 cycles per image at angle pi c / 10, a phase drawn uniformly."""
    n = 3_000
    images, labels = cifar10.generated_images(n, np.random.default_rng(1))
    assert images.dtype == np.uint8 and images.shape == (n, 3, 32, 32)
    assert np.array_equal(np.bincount(labels), np.full(10, n // 10))  # balanced, shuffled
    assert not np.array_equal(labels, np.arange(n) % 10)
    pixels = images.astype(np.float64) / 255
    for c in range(10):
        colour = 0.5 + 0.4 * np.cos(2 * np.pi * (c / 10 + np.array([0, 1 / 3, 2 / 3])))
        mean = pixels[labels == c].mean(axis=(0, 2, 3))  # stripes average out over phases
        np.testing.assert_allclose(mean, 0.75 * colour, atol=0.01)
    spectrum = np.abs(np.fft.fft2(pixels.mean(axis=1)))  # (n, ky, kx)
    for c in range(10):
        angle = np.pi * c / 10
        peak = np.array([3 * np.sin(angle), 3 * np.cos(angle)])
        power = spectrum[labels == c].mean(axis=0)
        power[0, 0] = 0
        found = np.array(np.unravel_index(power.argmax(), power.shape))
        found = np.where(found > 16, found - 32, found)  # signed frequencies
        assert min(np.abs(found - peak).max(), np.abs(found + peak).max()) <= 1, (c, found, peak)
    # Class 0: vertical stripes of exactly 3 cycles, amplitude 1/3 of the mean (0.25 / 0.75).
    horizontal = spectrum[labels == 0]
    ratio = horizontal[:, 0, 3] / horizontal[:, 0, 0]
    assert np.median(ratio) == pytest.approx(1 / 6, abs=0.01)  # a cosine's two halves
    # The brightest channel (class 0's red, 0.9 at the stripes' peaks, plus noise) is clipped
    # at 255, not wrapped around to dark values.
    red = images[labels == 0, 0]
    assert red.max() == 255 and red.min() > 0.1 * 255  # wrapped values would be 0..15
    phases = np.angle(np.fft.fft2(pixels[labels == 0].mean(axis=1))[:, 0, 3]) % (2 * np.pi)
    assert np.all(np.histogram(phases, bins=8, range=(0, 2 * np.pi))[0] > 0)  # the circle


def test_the_generated_fixture_records_how_it_was_made(tmp_path):
    folder = cifar10.write_cifar10(tmp_path, n_train=5, n_test=1, seed=4)
    manifest = json.loads((folder / cifar10.MANIFEST).read_text())
    assert manifest["generator"] == "lfxai.data.cifar10.write_cifar10" and manifest["seed"] == 4
    assert (manifest["n_train"], manifest["n_test"]) == (5, 1)
    with open(folder / cifar10.META_FILE, "rb") as handle:
        assert handle.read(2) == b"\x80\x02"
    with open(folder / cifar10.META_FILE, "rb") as handle:
        meta = prov.load_array_pickle(handle, encoding="latin1")
    assert meta == {
        "num_cases_per_batch": 1,
        "label_names": list(cifar10.LABEL_NAMES),
        "num_vis": 3072,
    }
    for n_train, n_test in ((4, 1), (5, 0)):
        with pytest.raises(ValueError, match=f"need n_train >= 5 .* got {n_train}, {n_test}"):
            cifar10.write_cifar10(tmp_path / "x", n_train=n_train, n_test=n_test)
