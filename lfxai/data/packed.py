"""Binary images kept 8 pixels per byte and decoded to floats only when indexed.

dSprites holds 737,280 binary 64x64 images: 377 MB packed, 12 GB as float32. A
:class:`PackedImages` stands in for the ``(N, C, H, W)`` float tensor of a :class:`Split`:
it has ``len``, ``shape`` and ``to(device)``, and ``images[index]`` decodes just the indexed
rows, so the training loop's ``split.x[batch_index]`` works unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import torch

_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)  # np.packbits' default big-endian order


def pack_images(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Packs binary images ``(n, ...)`` into uint8 rows ``(n, ceil(pixels / 8))``."""
    if isinstance(images, torch.Tensor):
        images = images.numpy()
    return np.packbits(images.reshape(len(images), -1).astype(bool), axis=1)


def unpack_rows(rows: torch.Tensor, n_pixels: int) -> torch.Tensor:
    """Unpacks uint8 rows ``(n, B)`` into float32 pixels ``(n, n_pixels)`` (0 or 1).

    The pixels stay on the rows' device.
    """
    bits = (rows.unsqueeze(-1) >> _SHIFTS.to(rows.device)) & 1
    return bits.reshape(len(rows), -1)[:, :n_pixels].float()


class PackedImages:
    """Binary images as packed rows, selected lazily and decoded on indexing.

    Args:
        packed: ``(M, B)`` uint8 rows of :func:`pack_images`: a numpy array (e.g. a read-only
            memory map of a cache file) or a torch tensor (e.g. on a GPU).
        image_shape: shape of one decoded image, e.g. ``(1, 64, 64)``.
        rows: which of the ``M`` rows this object holds, in order (None: all of them).
    """

    dtype = torch.float32

    def __init__(
        self,
        packed: np.ndarray | torch.Tensor,
        image_shape: tuple[int, ...],
        rows: torch.Tensor | None = None,
    ) -> None:
        n_bytes = math.ceil(math.prod(image_shape) / 8)
        if packed.ndim != 2 or packed.shape[1] != n_bytes:
            raise ValueError(f"packed rows {tuple(packed.shape)} do not hold {image_shape} images")
        self.packed = packed
        self.image_shape = tuple(image_shape)
        self.rows = None if rows is None else torch.as_tensor(rows, dtype=torch.int64).cpu()

    def __len__(self) -> int:
        return len(self.packed) if self.rows is None else len(self.rows)

    @property
    def shape(self) -> torch.Size:
        """``(N, *image_shape)``, as a tensor of the decoded images would have."""
        return torch.Size((len(self), *self.image_shape))

    def size(self, dim: int | None = None) -> torch.Size | int:
        """The shape, or its size along ``dim`` (as ``torch.Tensor.size``)."""
        return self.shape if dim is None else self.shape[dim]

    @property
    def device(self) -> torch.device:
        """Where the packed bits live (the CPU for a NumPy array)."""
        if isinstance(self.packed, torch.Tensor):
            return self.packed.device
        return torch.device("cpu")

    def __repr__(self) -> str:
        return f"PackedImages(shape={tuple(self.shape)}, device={self.device})"

    def _positions(self, index: int | slice | torch.Tensor | np.ndarray) -> np.ndarray | slice:
        """Rows of ``packed`` that ``index`` (into this object) selects."""
        if isinstance(index, slice):
            return index if self.rows is None else self.rows[index].numpy()
        if isinstance(index, int | np.integer):
            index = [int(index)]
        index = torch.as_tensor(index).cpu()
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        index = index.long()
        if len(index) and (index.min() < -len(self) or index.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} images")
        index = index % max(len(self), 1)  # negative indices count from the end, as in torch
        return (index if self.rows is None else self.rows[index]).numpy()

    def _gather(self, positions: np.ndarray | slice) -> torch.Tensor:
        """The packed rows at ``positions`` as a tensor (on the packed rows' device)."""
        if isinstance(self.packed, torch.Tensor):
            if not isinstance(positions, slice):
                positions = torch.from_numpy(positions).to(self.device)
            return self.packed[positions]
        # One gather from the (memory-mapped) array, in the requested order.
        return torch.from_numpy(np.ascontiguousarray(self.packed[positions]))

    def select(self, index: slice | torch.Tensor | np.ndarray) -> PackedImages:
        """The images at ``index``, still packed (nothing is decoded or copied)."""
        positions = self._positions(index)
        if isinstance(positions, slice):
            positions = np.arange(len(self.packed))[positions]
        return PackedImages(self.packed, self.image_shape, torch.from_numpy(positions))

    def __getitem__(self, index: int | slice | torch.Tensor | np.ndarray) -> torch.Tensor:
        """Decoded float32 images: ``(n, *image_shape)``, or ``image_shape`` for an int."""
        rows = self._gather(self._positions(index))
        images = unpack_rows(rows, math.prod(self.image_shape)).reshape(-1, *self.image_shape)
        return images[0] if isinstance(index, int | np.integer) else images

    def to(self, device: torch.device | str) -> PackedImages:
        """These images with their packed rows on ``device``.

        On the CPU nothing moves (a memory map stays a memory map); elsewhere the selected
        rows are gathered once and copied to the device (1/32 of the float32 size), so that
        batches are decoded there.
        """
        device = torch.device(device)
        if device == self.device:
            return self
        if device.type == "cpu" and not isinstance(self.packed, torch.Tensor):
            return self
        rows = self._gather(self._positions(slice(None)))
        return PackedImages(rows.to(device), self.image_shape)

    def split(self, size: int) -> list[torch.Tensor]:
        """Decoded chunks of ``size`` images, as ``torch.Tensor.split`` (mind the memory)."""
        return [self[start : start + size] for start in range(0, len(self), size)]

    def decode(self) -> torch.Tensor:
        """All images decoded at once: ``(n, *image_shape)`` float32 (mind the memory)."""
        return self[slice(None)]
