"""PackedImages answers size() and repr() like the tensor it stands for."""

from __future__ import annotations

import numpy as np
import torch

from lfxai.data.packed import PackedImages, pack_images


def test_size_and_repr_are_those_of_the_decoded_images():
    images = np.zeros((3, 4, 8), dtype=np.uint8)
    packed = PackedImages(pack_images(images), (1, 4, 8))
    assert packed.size() == torch.Size([3, 1, 4, 8]) == packed.decode().size()
    assert [packed.size(d) for d in (0, 1, -1)] == [3, 1, 8]
    assert repr(packed) == "PackedImages(shape=(3, 1, 4, 8), device=cpu)"
