"""The split every data set returns: inputs and labels as two tensors.

The inputs may instead be :class:`~lfxai.data.packed.PackedImages` (binary images decoded on
indexing, e.g. dSprites' memory-mapped cache): it indexes, moves and measures like a tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, TensorDataset

from lfxai.data.packed import PackedImages


@dataclass(frozen=True)
class Split:
    """Inputs ``(N, ...)`` and labels ``(N, ...)`` of one split (images, sequences, ...)."""

    x: torch.Tensor | PackedImages
    y: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"{len(self.x)} inputs but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: torch.Tensor | slice) -> Split:
        """The examples at ``index`` (indices or a slice), as a new split."""
        if isinstance(self.x, PackedImages):  # stays packed: nothing decoded
            return Split(self.x.select(index), self.y[index])
        return Split(self.x[index], self.y[index])

    def head(self, size: int | None) -> Split:
        """The first ``size`` examples (all when None)."""
        return self if size is None else self.subset(slice(0, size))

    def loader(self, batch_size: int, shuffle: bool = False, seed: int = 0) -> DataLoader:
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        dataset = TensorDataset(self.x, self.y)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)
