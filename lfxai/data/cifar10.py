"""CIFAR-10 in torchvision's on-disk layout: official files (md5-checked) or generated fixtures.

Layout: ``<root>/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``, the pickled
dicts of the official ``cifar-10-python.tar.gz`` (``data``: ``(n, 3072)`` uint8 rows in
channel-major order, ``labels``: ``n`` ints in 0..9), exactly what
``torchvision.datasets.CIFAR10(root)`` reads. There is no offline source: online, torchvision
downloads the archive; offline without the files, provisioning fails saying where to put them.

Two kinds of folders are accepted, and a file is never read before its digest is checked:

- official files: each must match torchvision's own md5 list (``CIFAR10.train_list``,
  ``test_list``, ``meta``). A corrupt one is re-downloaded when online (reported as repaired),
  otherwise refused with its name and digests.
- generated fixtures (:func:`write_cifar10`, for tests and smoke runs): small data sets in the
  same format. Their digests cannot be the official ones, so the generator writes a manifest,
  ``lfxai-fixture.json``, next to them with each file's sha256; a folder holding that manifest
  is checked against it instead (and runs on it log the source ``fixture``). Delete the
  manifest and the folder is held to the official digests again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import pickle
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lfxai.data.provision import (
    DataUnavailable,
    Provisioned,
    atomic_write_bytes,
    corrupt_files,
    failure_reason,
    load_array_pickle,
    new_folder,
    problems_line,
    sha256_file,
)
from lfxai.data.splits import Split

logger = logging.getLogger(__name__)

BASE_FOLDER = "cifar-10-batches-py"  # torchvision's CIFAR10.base_folder
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
FILES = (*TRAIN_FILES, TEST_FILE, META_FILE)
MANIFEST = "lfxai-fixture.json"
LABEL_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SHAPE = (3, 32, 32)
OFFICIAL_SIZES = (50_000, 10_000)  # images of the official train and test splits
ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
DOWNLOAD_TIMEOUT_S = 10.0


def batches_dir(root: str | Path) -> Path:
    """Directory of the pickled batches under a torchvision root."""
    return Path(root) / BASE_FOLDER


def official_md5() -> dict[str, str]:
    """Torchvision's md5 of each official file (its own integrity list, read from the class)."""
    from torchvision.datasets import CIFAR10  # local import: torchvision is slow to import

    listed = [*CIFAR10.train_list, *CIFAR10.test_list]
    digests = {name: md5 for name, md5 in listed}
    digests[CIFAR10.meta["filename"]] = CIFAR10.meta["md5"]
    return digests


def md5_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks (the official digests are md5)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Expected:
    """What a folder's files must match.

    ``kind`` is ``official`` (torchvision's md5) or ``fixture`` (sha256 from the manifest).
    """

    kind: str
    algorithm: str
    digests: dict[str, str]

    def digest_of(self, path: Path) -> str:
        """The file's digest by this folder's algorithm (md5 or sha256)."""
        return md5_file(path) if self.algorithm == "md5" else sha256_file(path)


def expected_digests(folder: Path) -> Expected:
    """The digests ``folder``'s files must have: the manifest's when present, else official.

    Raises:
        DataUnavailable: the manifest exists but cannot be read or lacks a file.
    """
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return Expected("official", "md5", official_md5())
    try:
        recorded = json.loads(manifest.read_text())["sha256"]
        digests = {name: str(recorded[name]) for name in FILES}
    except (ValueError, KeyError, TypeError) as error:
        raise DataUnavailable(
            f"{manifest} is not a valid fixture manifest ({error!r}); delete it to check the "
            "folder against the official digests, or regenerate the fixture"
        ) from None
    return Expected("fixture", "sha256", digests)


def split_sizes(root: str | Path) -> tuple[int, int]:
    """Images of the train and test splits under a torchvision root, known without reading them.

    A fixture's manifest records them; the official files hold 50,000 / 10,000.
    """
    manifest = batches_dir(root) / MANIFEST
    if manifest.is_file():
        try:
            recorded = json.loads(manifest.read_text())
            return int(recorded["n_train"]), int(recorded["n_test"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # an invalid manifest is refused when the files are checked
    return OFFICIAL_SIZES


def mismatches(folder: Path, expected: Expected) -> list[str]:
    """One line per missing file or file with another digest (empty: every file is valid)."""
    problems = []
    for name, digest in expected.digests.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        found = expected.digest_of(path)
        if found != digest:
            problems.append(
                f"{path}: {expected.algorithm} {found} ({path.stat().st_size} bytes), "
                f"expected {digest}"
            )
    return problems


def _download_torchvision(folder: Path) -> None:
    """Download with torchvision into a scratch root, verify, then move the files in."""
    from torchvision.datasets import CIFAR10

    previous = socket.getdefaulttimeout()
    # urllib inherits this timeout: an unreachable host fails in seconds instead of hanging.
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        # The scratch root sits in the folder (same file system: atomic renames); a failed
        # download removes the folders it had to create (no empty cifar10/ is left behind).
        with (
            new_folder(folder),
            tempfile.TemporaryDirectory(dir=folder, prefix=".torchvision-") as scratch,
        ):
            CIFAR10(scratch, train=True, download=True)  # checks torchvision's md5 itself
            fetched = batches_dir(scratch)
            problems = mismatches(fetched, Expected("official", "md5", official_md5()))
            if problems:
                raise RuntimeError("downloaded files fail their md5: " + "; ".join(problems))
            for name in FILES:
                (fetched / name).replace(folder / name)  # same file system: atomic rename
    finally:
        socket.setdefaulttimeout(previous)


def provision_cifar10(root: str | Path, download: bool = True) -> Provisioned:
    """Make sure the CIFAR-10 batches are under ``<root>/cifar-10-batches-py`` and valid.

    Args:
        root: torchvision root (``data/cifar10`` under the project data directory).
        download: let torchvision download the official archive when files are missing or
            corrupt (official files only; a fixture is never replaced).

    Returns:
        The batches directory, the source (``present``, ``fixture`` or ``torchvision``) and
        the files that failed their digest and were replaced.

    Raises:
        DataUnavailable: files are missing or corrupt and could not be fetched; the one-line
            message names each file with its found and expected digest and says where to put
            the files. A failed download leaves no folder it created behind.
    """
    folder = batches_dir(root)
    expected = expected_digests(folder)
    problems = mismatches(folder, expected)
    if not problems:
        return Provisioned(folder, "fixture" if expected.kind == "fixture" else "present")
    if expected.kind == "fixture":
        raise DataUnavailable(
            f"CIFAR-10 fixture under {folder} does not match its manifest {MANIFEST}: "
            f"{problems_line(problems)}; to fix: regenerate it "
            "(lfxai.data.cifar10.write_cifar10), or delete the folder"
        )
    corrupt = corrupt_files(problems)
    tried = "nothing (download=False)"
    if download:
        try:
            _download_torchvision(folder)
            if corrupt:
                logger.warning("CIFAR-10 files failed their md5, replaced: %s", "; ".join(corrupt))
            return Provisioned(folder, "torchvision", corrupt)
        except Exception as error:  # any failure (offline, bad archive) ends in the message below
            # Debug only: the reason is in the error raised below (no fallback follows).
            logger.debug("CIFAR-10 download failed: %s", error)
            tried = f"torchvision download of {ARCHIVE_URL} ({failure_reason(error)})"
    raise DataUnavailable(
        f"CIFAR-10 is not available under {folder}: {problems_line(problems)}; tried: {tried}; "
        "there is no offline source; to fix: be online and rerun (`python -m lfxai "
        f"provision cifar10 --data_dir {Path(root).parent}`), or download {ARCHIVE_URL} "
        f"elsewhere and extract its {BASE_FOLDER}/ folder into {Path(root)} (each file must "
        "match torchvision's md5: torchvision.datasets.CIFAR10.train_list/test_list/meta)"
    )


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 3, 32, 32)`` uint8 and labels ``(n,)`` of one pickled batch.

    Raises:
        ValueError: the pickle is not a CIFAR batch (keys, shapes, dtype, label range).
    """
    with open(path, "rb") as handle:
        # latin1: the official batches were pickled by Python 2 (numpy's bytes stored as str).
        try:
            entry = load_array_pickle(handle, encoding="latin1")
        except (pickle.UnpicklingError, EOFError, ValueError) as error:
            raise ValueError(f"{path} is not a readable CIFAR-10 batch: {error}") from None
    if not isinstance(entry, dict) or "data" not in entry or "labels" not in entry:
        raise ValueError(f"{path} is not a CIFAR-10 batch (a dict with 'data' and 'labels')")
    data, labels = entry["data"], np.asarray(entry["labels"])
    n = len(labels)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape != (n, 3072):
        shape = getattr(data, "shape", None)
        raise ValueError(f"{path}: data {shape} is not ({n}, 3072) uint8")
    if n and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: labels outside 0..9")
    return data.reshape(n, *IMAGE_SHAPE), labels.astype(np.int64)


def cifar10_split(root: str | Path, train: bool, size: int | None = None) -> Split:
    """The first ``size`` images (all if None) of CIFAR-10's train or test split.

    The files are checked first (:func:`provision_cifar10`, fetching them when online).

    Returns:
        Images ``(N, 3, 32, 32)`` float32 = uint8 / 255 and labels ``(N,)`` int64.
    """
    folder = provision_cifar10(root).path
    parts = [_read_batch(folder / name) for name in (TRAIN_FILES if train else (TEST_FILE,))]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if size is not None:
        if not 0 < size <= len(labels):
            raise ValueError(f"size must be in 1..{len(labels)}, got {size}")
        images, labels = images[:size], labels[:size]
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255)
    return Split(x, torch.from_numpy(labels.copy()))


def _encode_batch(data: np.ndarray, labels: np.ndarray, label: str) -> bytes:
    names = [f"generated_{label}_{i}.png" for i in range(len(labels))]
    entry = {
        "batch_label": label,
        "labels": [int(v) for v in labels],
        "data": np.ascontiguousarray(data.reshape(len(labels), -1)),
        "filenames": names,
    }
    buffer = io.BytesIO()
    pickle.dump(entry, buffer, protocol=2)
    return buffer.getvalue()


def generated_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``(n, 3, 32, 32)`` uint8 with labels that show in the pixels.

    Class ``c`` has its own colour and the orientation of its stripes, plus noise: an encoder
    can group same-class images, so similarity rates on a fixture exceed chance.
    """
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    hues = labels / 10.0
    colour = 0.5 + 0.4 * np.cos(2 * np.pi * (hues[:, None] + np.array([0.0, 1 / 3, 2 / 3])))
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    angle = np.pi * labels / 10.0
    phase = rng.uniform(0, 2 * np.pi, size=n)
    wave = np.cos(
        2 * np.pi * 3 * (np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy)
        + phase[:, None, None]
    )
    images = colour[:, :, None, None] * (0.75 + 0.25 * wave[:, None])
    images = images + rng.normal(0, 0.05, size=images.shape)
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8), labels


def write_cifar10(root: str | Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Write a small generated CIFAR-10 in the real on-disk format, with its manifest.

    The ``n_train`` images are spread over the five ``data_batch_*`` files, the ``n_test`` go
    into ``test_batch``; ``batches.meta`` holds the real label names. The manifest
    (:data:`MANIFEST`) records each file's sha256 and is written last, so an interrupted
    write leaves a folder that fails its check.

    Returns:
        The batches directory.
    """
    if n_train < 5 or n_test < 1:
        raise ValueError(
            f"need n_train >= 5 (five batches) and n_test >= 1, got {n_train}, {n_test}"
        )
    folder = batches_dir(root)
    (folder / MANIFEST).unlink(missing_ok=True)
    rng = np.random.default_rng(seed)
    images, labels = generated_images(n_train + n_test, rng)
    contents: dict[str, bytes] = {}
    bounds = np.linspace(0, n_train, 6).round().astype(int)
    for i, name in enumerate(TRAIN_FILES):
        part = slice(bounds[i], bounds[i + 1])
        contents[name] = _encode_batch(images[part], labels[part], f"training batch {i + 1} of 5")
    contents[TEST_FILE] = _encode_batch(images[n_train:], labels[n_train:], "testing batch 1 of 1")
    meta = {
        "num_cases_per_batch": int(bounds[1]),
        "label_names": list(LABEL_NAMES),
        "num_vis": 3072,
    }
    contents[META_FILE] = pickle.dumps(meta, protocol=2)
    for name, content in contents.items():
        atomic_write_bytes(folder / name, content)
    digests = {name: hashlib.sha256(content).hexdigest() for name, content in contents.items()}
    manifest = {
        "generator": "lfxai.data.cifar10.write_cifar10",
        "n_train": n_train,
        "n_test": n_test,
        "seed": seed,
        "sha256": digests,
    }
    atomic_write_bytes(folder / MANIFEST, json.dumps(manifest, indent=2).encode())
    return folder
