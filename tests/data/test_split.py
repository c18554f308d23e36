"""The split every data set returns: checked lengths, subsets and heads, and loaders whose
order depends on the seed alone, the same for packed images as for a tensor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfxai.data.packed import PackedImages, pack_images
from lfxai.data.splits import Split

N = 10


def _images() -> np.ndarray:
    """``(N, 4, 8)`` binary images, each different (image i has i pixels set)."""
    images = np.zeros((N, 4 * 8), dtype=np.uint8)
    for i in range(N):
        images[i, :i] = 1
    return images.reshape(N, 4, 8)


def _splits() -> tuple[Split, Split]:
    """The same examples as a tensor and as packed images; labels 0..N-1."""
    images = _images()
    tensor = Split(torch.from_numpy(images).float()[:, None], torch.arange(N))
    packed = Split(PackedImages(pack_images(images), (1, 4, 8)), torch.arange(N))
    return tensor, packed


def test_inputs_and_labels_must_count_the_same() -> None:
    with pytest.raises(ValueError, match="^3 inputs but 2 labels$"):
        Split(torch.zeros(3, 1), torch.zeros(2))


def test_subsets_and_heads_keep_inputs_with_their_labels() -> None:
    for split in _splits():
        chosen = split.subset(torch.tensor([7, 2]))
        assert chosen.y.tolist() == [7, 2]
        assert chosen.x[:].sum(dim=(1, 2, 3)).tolist() == [7.0, 2.0]  # image i: i pixels
        head = split.head(3)
        assert head.y.tolist() == [0, 1, 2] and len(head.x) == 3
        assert head.x[:].sum(dim=(1, 2, 3)).tolist() == [0.0, 1.0, 2.0]
        assert split.head(None) is split
    assert isinstance(_splits()[1].subset(torch.tensor([1])).x, PackedImages)  # not decoded


def _drawn(split: Split, **kwargs) -> tuple[list[list[int]], list[float]]:
    """The labels of each batch, and each input's pixel count, in the loader's order."""
    batches = list(split.loader(4, **kwargs))
    labels = [y.tolist() for _, y in batches]
    pixels = torch.cat([x.sum(dim=(1, 2, 3)) for x, _ in batches]).tolist()
    return labels, pixels


def test_loaders_keep_the_order_unless_shuffled_by_a_seed() -> None:
    tensor, packed = _splits()
    for split in (tensor, packed):
        labels, pixels = _drawn(split)
        assert labels == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # the last batch is kept
        assert pixels == [float(i) for i in range(N)]  # inputs with their labels
        shuffled, pixels = _drawn(split, shuffle=True, seed=3)
        assert sorted(sum(shuffled, [])) == list(range(N))
        assert shuffled != labels
        assert pixels == [float(i) for i in sum(shuffled, [])]
        assert _drawn(split, shuffle=True, seed=3)[0] == shuffled  # the seed alone decides
        assert _drawn(split, shuffle=True, seed=4)[0] != shuffled
        assert _drawn(split, shuffle=True) == _drawn(split, shuffle=True, seed=0)  # default
    # packed images are drawn in the order a tensor's loader draws them
    assert _drawn(packed, shuffle=True, seed=3) == _drawn(tensor, shuffle=True, seed=3)
