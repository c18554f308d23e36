"""MNIST resized once per data directory (32x32 for the Burgess VAE) and cached on disk."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lfxai.data import mnist
from lfxai.data.idx import encode_idx, read_idx
from lfxai.data.provision import atomic_write_bytes, sha256_bytes, sha256_file
from lfxai.data.splits import Split

logger = logging.getLogger(__name__)

# The resized copies (e.g. 32x32 for the Burgess VAE) are computed once per data directory
# and cached next to the raw files; the method is part of what the cache is checked against.
RESIZE_METHOD = "torch.nn.functional.interpolate(bilinear, align_corners=False), rounded to uint8"


def resized_dir(data_dir: str | Path, side: int) -> Path:
    """Folder of the cached ``side x side`` copies: ``<data_dir>/MNIST/resized<side>``."""
    return Path(data_dir) / "MNIST" / f"resized{side}"


def resize_images(images: np.ndarray, side: int) -> np.ndarray:
    """Bilinear resize of uint8 images ``(N, H, W)`` to ``(N, side, side)`` uint8 (rounded).

    uint8 like the reference's PIL resize of its uint8 images; chunks bound the peak memory.
    """
    chunks = []
    for chunk in torch.from_numpy(images).split(10_000):
        resized = F.interpolate(
            chunk.unsqueeze(1).float(), size=(side, side), mode="bilinear", align_corners=False
        )
        chunks.append(resized.round().clamp(0, 255).to(torch.uint8)[:, 0])
    return torch.cat(chunks).numpy()


def _cache_is_valid(file: Path, manifest: Path, expected: dict[str, object]) -> bool:
    """Whether the cached file exists and matches its manifest, for the same source and method.

    A corrupt, truncated or stale file is recomputed.
    """
    if not (file.is_file() and manifest.is_file()):
        return False
    try:
        recorded = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    same_source = all(recorded.get(k) == v for k, v in expected.items())
    return same_source and recorded.get("sha256") == sha256_file(file)


def resized_images(data_dir: str | Path, train: bool, side: int = 32) -> np.ndarray:
    """One MNIST split's images resized to ``side x side`` (uint8), from the on-disk cache.

    The first call resizes the raw images (:func:`resize_images`) and writes them as an IDX
    file plus a JSON manifest (source file and sha256, method, sha256 of the result), each
    atomically; later calls check the cache against its manifest and read it. Where the
    cache cannot be written (a read-only data folder), the images are resized in memory. Concurrent
    first calls each write identical bytes, so whichever rename lands last is as good.

    Args:
        data_dir: torchvision root holding ``MNIST/raw`` (provisioned if missing).
        train: the 60k training split if True, else the 10k test split.
        side: the new height and width.

    Returns:
        ``(N, side, side)`` uint8 images.
    """
    folder = mnist.ensure_mnist(data_dir)
    image_name, _ = mnist.file_names(train)
    target = resized_dir(data_dir, side) / image_name
    manifest = target.with_name(f"{image_name}.json")
    expected = {
        "source": image_name,
        "source_sha256": mnist.MNIST_SHA256[image_name],
        "side": side,
        "method": RESIZE_METHOD,
    }
    if _cache_is_valid(target, manifest, expected):
        return read_idx(target)
    images = resize_images(read_idx(folder / image_name), side)
    content = encode_idx(images)
    record = {**expected, "sha256": sha256_bytes(content)}
    try:
        atomic_write_bytes(target, content)
        atomic_write_bytes(manifest, json.dumps(record, indent=2).encode())
    except OSError as error:  # e.g. a shared, read-only data folder: the data are still there
        logger.warning("MNIST resized to %d not cached (%s): resized in memory", side, error)
    return images


def mnist_resized_split(
    data_dir: str | Path, train: bool, size: int | None = None, side: int = 32
) -> Split:
    """Like :func:`lfxai.data.mnist.mnist_split`, the images resized once to ``side x side``.

    Returns:
        Images ``(N, 1, side, side)`` float32 = uint8 / 255 and int64 labels.
    """
    images = resized_images(data_dir, train, side)
    _, label_name = mnist.file_names(train)
    labels = read_idx(mnist.raw_dir(data_dir) / label_name)
    if size is not None:
        if not 0 < size <= len(labels):
            raise ValueError(f"size must be in 1..{len(labels)}, got {size}")
        images, labels = images[:size], labels[:size]
    x = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).float().div_(255)
    return Split(x, torch.from_numpy(labels.astype(np.int64)))
