"""PackedImages answers size() and repr() like the tensor it stands for."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfxai.data.packed import PackedImages, pack_images


def test_size_and_repr_are_those_of_the_decoded_images():
    images = np.zeros((3, 4, 8), dtype=np.uint8)
    packed = PackedImages(pack_images(images), (1, 4, 8))
    assert packed.size() == torch.Size([3, 1, 4, 8]) == packed.decode().size()
    assert [packed.size(d) for d in (0, 1, -1)] == [3, 1, 8]
    assert repr(packed) == "PackedImages(shape=(3, 1, 4, 8), device=cpu)"


def _packed(n: int, shape: tuple[int, ...] = (1, 3, 3)) -> tuple[PackedImages, np.ndarray]:
    """n random binary images of ``shape`` (9 pixels: not a whole number of bytes)."""
    images = np.random.default_rng(n).integers(0, 2, size=(n, *shape[1:]), dtype=np.uint8)
    return PackedImages(pack_images(images), shape), images


def test_images_whose_pixels_fill_no_whole_byte_decode_exactly():
    packed, images = _packed(5)
    np.testing.assert_array_equal(packed.decode().numpy()[:, 0], images)
    np.testing.assert_array_equal(packed[3].numpy()[0], images[3])


def test_indices_count_from_the_end_masks_select_and_the_range_is_checked():
    packed, images = _packed(3)
    np.testing.assert_array_equal(packed[torch.tensor([-3, -1])].numpy()[:, 0], images[[0, 2]])
    mask = torch.tensor([True, False, True])
    np.testing.assert_array_equal(packed[mask].numpy()[:, 0], images[[0, 2]])
    for bad in ([3], [-4]):
        with pytest.raises(IndexError, match=r"^index out of range for 3 images$"):
            packed[torch.tensor(bad)]
    one, image = _packed(1)
    np.testing.assert_array_equal(one[torch.tensor([-1])].numpy()[0, 0], image[0])


def test_rows_are_int64_and_bad_packed_rows_are_named():
    packed = PackedImages(
        pack_images(np.zeros((4, 3, 3), np.uint8)), (1, 3, 3), np.array([2, 0], np.int32)
    )
    assert packed.rows.dtype == torch.int64 and len(packed) == 2
    message = r"^packed rows \(4, 3\) do not hold \(1, 3, 3\) images$"
    with pytest.raises(ValueError, match=message):
        PackedImages(np.zeros((4, 3), np.uint8), (1, 3, 3))  # 9 pixels need 2 bytes
    with pytest.raises(ValueError, match=r"^packed rows \(8,\) do not hold"):
        PackedImages(np.zeros(8, np.uint8), (1, 3, 3))


def test_rows_held_as_a_tensor_decode_whole_and_in_slices():
    _, images = _packed(4)
    on_tensor = PackedImages(torch.from_numpy(pack_images(images)), (1, 3, 3))
    np.testing.assert_array_equal(on_tensor.decode().numpy()[:, 0], images)
    np.testing.assert_array_equal(on_tensor[1:3].numpy()[:, 0], images[1:3])
