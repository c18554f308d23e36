"""The 32x32 MNIST split of ``disvae``: resized once, cached on disk, checked on every load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lfxai.data import idx, mnist, mnist_resized
from lfxai.data import provision as prov
from tests.data.test_mnist import _fake_raw_dir

IMAGES = "train-images-idx3-ubyte"


@pytest.fixture
def fake_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = _fake_raw_dir(tmp_path)
    digests = {name: prov.sha256_file(folder / name) for name in mnist.MNIST_SHA256}
    monkeypatch.setattr(mnist, "MNIST_SHA256", digests)
    return tmp_path


def test_resize_is_bilinear_and_rounded_to_uint8():
    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    resized = mnist_resized.resize_images(images, 32)
    assert resized.shape == (3, 32, 32) and resized.dtype == np.uint8
    exact = F.interpolate(
        torch.from_numpy(images)[:, None].double(), size=(32, 32), mode="bilinear"
    )[:, 0]
    # Rounding to the nearest integer: never off by more than one half (plus float32 noise).
    assert float((torch.from_numpy(resized).double() - exact).abs().max()) <= 0.5 + 1e-3


def test_the_split_is_computed_once_then_read_from_the_checked_cache(
    fake_mnist: Path, monkeypatch: pytest.MonkeyPatch
):
    split = mnist_resized.mnist_resized_split(fake_mnist, train=True, size=4)
    assert split.x.shape == (4, 1, 32, 32) and split.x.dtype == torch.float32
    raw = idx.read_idx(mnist.raw_dir(fake_mnist) / IMAGES)
    expected = torch.from_numpy(mnist_resized.resize_images(raw, 32)[:4]).float() / 255
    torch.testing.assert_close(split.x[:, 0], expected, rtol=0, atol=0)
    labels = idx.read_idx(mnist.raw_dir(fake_mnist) / "train-labels-idx1-ubyte")
    assert split.y.tolist() == labels[:4].tolist()
    cached = mnist_resized.resized_dir(fake_mnist, 32) / IMAGES
    manifest = json.loads(cached.with_name(f"{IMAGES}.json").read_text())
    assert manifest["sha256"] == prov.sha256_file(cached)
    assert manifest["source_sha256"] == mnist.MNIST_SHA256[IMAGES]

    calls = []
    original = mnist_resized.resize_images
    monkeypatch.setattr(mnist_resized, "resize_images", lambda *a: calls.append(a) or original(*a))
    again = mnist_resized.mnist_resized_split(fake_mnist, train=True)
    assert calls == [] and len(again) == 6  # read from the cache, not recomputed
    torch.testing.assert_close(again.x[:4], split.x, rtol=0, atol=0)

    # A corrupt cache fails its manifest's sha256 and is recomputed, atomically.
    cached.write_bytes(cached.read_bytes()[:-10])
    repaired = mnist_resized.mnist_resized_split(fake_mnist, train=True)
    assert len(calls) == 1
    torch.testing.assert_close(repaired.x, again.x, rtol=0, atol=0)
    assert prov.sha256_file(cached) == manifest["sha256"]
    assert not [p for p in cached.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_manifest_of_other_source_files_invalidates_the_cache(
    fake_mnist: Path, monkeypatch: pytest.MonkeyPatch
):
    mnist_resized.mnist_resized_split(fake_mnist, train=False)
    manifest = mnist_resized.resized_dir(fake_mnist, 32) / "t10k-images-idx3-ubyte.json"
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(record | {"source_sha256": "0" * 64}))
    calls = []
    original = mnist_resized.resize_images
    monkeypatch.setattr(mnist_resized, "resize_images", lambda *a: calls.append(a) or original(*a))
    mnist_resized.mnist_resized_split(fake_mnist, train=False)
    assert len(calls) == 1
    assert json.loads(manifest.read_text())["source_sha256"] != "0" * 64


def test_a_prefix_larger_than_the_split_is_an_error(fake_mnist: Path):
    with pytest.raises(ValueError, match=r"size must be in 1\.\.4, got 5"):
        mnist_resized.mnist_resized_split(fake_mnist, train=False, size=5)


def test_a_read_only_data_folder_resizes_in_memory(
    fake_mnist: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """A shared, read-only data folder holds the raw files: the run goes on uncached."""

    def read_only(path, _data):
        raise PermissionError(f"[Errno 13] Permission denied: '{path}'")

    monkeypatch.setattr(mnist_resized, "atomic_write_bytes", read_only)
    split = mnist_resized.mnist_resized_split(fake_mnist, train=False)
    raw = idx.read_idx(mnist.raw_dir(fake_mnist) / "t10k-images-idx3-ubyte")
    expected = torch.from_numpy(mnist_resized.resize_images(raw, 32)).float() / 255
    torch.testing.assert_close(split.x[:, 0], expected, rtol=0, atol=0)
    assert not mnist_resized.resized_dir(fake_mnist, 32).exists()
    assert "resized in memory" in caplog.text and "Permission denied" in caplog.text


def test_the_cache_lives_under_the_mnist_folder_and_black_stays_black():
    assert mnist_resized.resized_dir("/data", 32) == Path("/data/MNIST/resized32")
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    images[1] = 255
    resized = mnist_resized.resize_images(images, 16)
    assert resized.shape == (2, 16, 16)
    assert (resized[0] == 0).all() and (resized[1] == 255).all()


def test_the_manifest_records_source_side_method_and_digest(fake_mnist: Path):
    mnist_resized.mnist_resized_split(fake_mnist, train=False, side=16)
    folder = mnist_resized.resized_dir(fake_mnist, 16)
    manifest = folder / "t10k-images-idx3-ubyte.json"
    record = json.loads(manifest.read_text())
    assert record == {
        "source": "t10k-images-idx3-ubyte",
        "source_sha256": mnist.MNIST_SHA256["t10k-images-idx3-ubyte"],
        "side": 16,
        "method": mnist_resized.RESIZE_METHOD,
        "sha256": prov.sha256_file(folder / "t10k-images-idx3-ubyte"),
    }
    assert manifest.read_text() == json.dumps(record, indent=2)


def test_a_cached_file_without_its_manifest_or_the_reverse_is_recomputed(
    fake_mnist: Path, monkeypatch: pytest.MonkeyPatch
):
    first = mnist_resized.mnist_resized_split(fake_mnist, train=False)
    cached = mnist_resized.resized_dir(fake_mnist, 32) / "t10k-images-idx3-ubyte"
    calls = []
    original = mnist_resized.resize_images
    monkeypatch.setattr(mnist_resized, "resize_images", lambda *a: calls.append(a) or original(*a))
    cached.unlink()  # the manifest alone
    torch.testing.assert_close(
        mnist_resized.mnist_resized_split(fake_mnist, train=False).x, first.x, rtol=0, atol=0
    )
    cached.with_name(f"{cached.name}.json").unlink()  # the images alone
    mnist_resized.mnist_resized_split(fake_mnist, train=False)
    assert len(calls) == 2


def test_a_split_has_int64_labels_its_side_and_any_prefix_from_1_to_all(fake_mnist: Path):
    split = mnist_resized.mnist_resized_split(fake_mnist, train=False, side=16)
    assert split.x.shape == (4, 1, 16, 16) and split.y.dtype == torch.int64
    assert len(mnist_resized.mnist_resized_split(fake_mnist, train=False, size=1)) == 1
    assert len(mnist_resized.mnist_resized_split(fake_mnist, train=False, size=4)) == 4
    with pytest.raises(ValueError, match=r"^size must be in 1\.\.4, got 0$"):
        mnist_resized.mnist_resized_split(fake_mnist, train=False, size=0)


def test_an_uncached_resize_says_which_side_and_why(
    fake_mnist: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    def read_only(path, _data):
        raise PermissionError("read-only")

    monkeypatch.setattr(mnist_resized, "atomic_write_bytes", read_only)
    mnist_resized.mnist_resized_split(fake_mnist, train=False, side=16)
    assert caplog.messages == ["MNIST resized to 16 not cached (read-only): resized in memory"]


def test_an_unreadable_manifest_beside_a_stale_file_is_recomputed_at_side_32(fake_mnist: Path):
    fresh = mnist_resized.resized_images(fake_mnist, train=False)
    assert fresh.shape[1:] == (32, 32)  # the default side
    cached = mnist_resized.resized_dir(fake_mnist, 32) / "t10k-images-idx3-ubyte"
    idx.write_idx(cached, np.zeros_like(fresh))  # stale but well-formed
    cached.with_name(f"{cached.name}.json").write_text("{not json")
    np.testing.assert_array_equal(mnist_resized.resized_images(fake_mnist, train=False), fresh)
