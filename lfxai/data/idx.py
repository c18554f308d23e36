"""The IDX format of the MNIST files: a magic number, the dimensions, then unsigned bytes."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from lfxai.data.provision import atomic_write_bytes

_IDX_UBYTE = 0x08  # IDX type code of unsigned bytes; magic = 0x0800 + ndim (2051 / 2049)


def encode_idx(array: np.ndarray) -> bytes:
    """Serialise a uint8 array, e.g. images ``(N, 28, 28)`` or labels ``(N,)``, as IDX bytes.

    The header is the magic ``0x0800 + ndim`` (2051 images, 2049 labels), then each dimension,
    all big-endian uint32; the C-order bytes follow.
    """
    if array.dtype != np.uint8 or array.ndim < 1:
        raise ValueError(f"IDX writer takes uint8 arrays of rank >= 1, got {array.dtype}")
    header = bytes([0, 0, _IDX_UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file, atomically (see :func:`encode_idx`)."""
    return atomic_write_bytes(path, encode_idx(array))


def read_idx(path: str | Path) -> np.ndarray:
    """Read an uncompressed uint8 IDX file.

    Returns:
        A writable uint8 array with the dimensions recorded in the header.

    Raises:
        ValueError: bad magic number, or a file size that disagrees with the header.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        magic = handle.read(4)
        if len(magic) != 4 or magic[:3] != bytes([0, 0, _IDX_UBYTE]) or magic[3] == 0:
            raise ValueError(f"{path} is not a uint8 IDX file (magic {magic.hex()})")
        ndim = magic[3]
        shape = struct.unpack(f">{ndim}I", handle.read(4 * ndim))
    offset = 4 + 4 * ndim
    expected = offset + int(np.prod(shape))
    if path.stat().st_size != expected:
        raise ValueError(f"{path}: {path.stat().st_size} bytes, header {shape} needs {expected}")
    return np.fromfile(path, dtype=np.uint8, offset=offset).reshape(shape)
