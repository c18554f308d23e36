"""The split every data set returns: inputs and labels as two tensors.

The inputs may instead be :class:`~lfxai.data.packed.PackedImages` (binary images decoded on
indexing, e.g. dSprites' memory-mapped cache): it indexes, moves and measures like a tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, TensorDataset

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
        """A DataLoader of ``(x, y)`` batches, shuffled by ``seed`` when asked."""
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        if isinstance(self.x, PackedImages):
            # Whole batches are decoded at once (one gather, one unpack), in the same order
            # as the DataLoader below would draw single examples with this generator.
            order = RandomSampler(self, generator=generator) if shuffle else range(len(self))
            batches = BatchSampler(order, batch_size, drop_last=False)
            return DataLoader(_Batches(self), batch_size=None, sampler=batches, generator=generator)
        dataset = TensorDataset(self.x, self.y)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)


class _Batches(Dataset):
    """Indexed by a list of indices: the whole batch of a split at once."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __getitem__(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(index, dtype=torch.int64)
        return self.split.x[index], self.split.y[index]
