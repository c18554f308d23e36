"""Top-k masks: exact counts, the highest scores, any feature shape; replacement values;
the Gaussian-blur baseline against torchvision's."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2.functional import gaussian_blur

from lfxai.data.masking import GaussianBlur, apply_mask, top_k_mask


@pytest.mark.parametrize("shape", [(3, 10), (2, 1, 4, 5), (2, 7, 1)])
@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.25, 0.5, 0.74, 1.0])
def test_exactly_round_k_of_the_highest_scores_are_selected(shape, fraction):
    n_features = torch.Size(shape[1:]).numel()
    k = round(fraction * n_features)
    # Distinct scores: a permutation per example, so "the k highest" is unambiguous.
    generator = torch.Generator().manual_seed(len(shape))
    ranks = torch.stack([torch.randperm(n_features, generator=generator) for _ in range(shape[0])])
    mask = top_k_mask(ranks.view(shape).float(), fraction)
    assert mask.shape == shape and mask.dtype == torch.bool
    flat = mask.reshape(shape[0], -1)
    assert flat.sum(1).tolist() == [k] * shape[0]
    assert torch.equal(flat, ranks >= n_features - k)  # the k highest ranks, no others


def test_half_features_round_to_the_nearest_count():
    scores = torch.arange(10.0).view(1, 10)
    assert int(top_k_mask(scores, 0.25).sum()) == 2  # 2.5 -> 2 (round half to even)
    assert int(top_k_mask(scores, 0.35).sum()) == 4  # 3.5 -> 4
    assert int(top_k_mask(scores, 0.26).sum()) == 3


@pytest.mark.parametrize("fraction", [-0.01, 1.01])
def test_fractions_outside_zero_one_are_errors(fraction):
    with pytest.raises(ValueError, match=rf"fraction must be in \[0, 1\], got {fraction}"):
        top_k_mask(torch.zeros(1, 4), fraction)


def test_the_scores_are_not_modified():
    scores = torch.tensor([[3.0, 1.0, 2.0]])
    top_k_mask(scores, 0.5)
    assert torch.equal(scores, torch.tensor([[3.0, 1.0, 2.0]]))


def test_apply_mask_replaces_only_masked_features():
    inputs = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[True, False, False], [False, True, True]])
    assert torch.equal(apply_mask(inputs, mask), torch.tensor([[0.0, 2, 3], [4, 0, 0]]))
    assert torch.equal(
        apply_mask(inputs, mask, -1.5), torch.tensor([[-1.5, 2, 3], [4, -1.5, -1.5]])
    )
    blurred = inputs * 10
    assert torch.equal(apply_mask(inputs, mask, blurred), torch.tensor([[10.0, 2, 3], [4, 50, 60]]))
    assert torch.equal(inputs, torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))  # untouched


def test_apply_mask_broadcasts_and_keeps_the_input_dtype():
    inputs = torch.ones(2, 3, 2, 2, dtype=torch.float64)
    mask = torch.zeros(2, 1, 2, 2, dtype=torch.bool)
    mask[:, :, 0, 0] = True  # one mask for every channel
    out = apply_mask(inputs, mask, torch.tensor(7, dtype=torch.int64))
    assert out.dtype == torch.float64
    assert bool((out[:, :, 0, 0] == 7).all()) and int((out == 7).sum()) == 2 * 3


def test_the_result_has_the_input_dtype_whatever_the_replacement():
    """Images stay in their own dtype: uint8 pixels get uint8 values, half floats stay half."""
    pixels = torch.full((1, 4), 200, dtype=torch.uint8)
    mask = torch.tensor([[True, False, True, False]])
    out = apply_mask(pixels, mask, 3)  # a Python number
    assert out.dtype == torch.uint8 and out.tolist() == [[3, 200, 3, 200]]
    half = torch.ones(1, 4, dtype=torch.float16)
    blurred = torch.full((1, 4), 0.25, dtype=torch.float32)  # a float32 tensor, not a scalar
    out = apply_mask(half, mask, blurred)
    assert out.dtype == torch.float16 and out.tolist() == [[0.25, 1.0, 0.25, 1.0]]


@pytest.mark.parametrize(("kernel_size", "sigma"), [(21, 5.0), (5, 1.0), (7, 2.5), (1, 0.5)])
def test_gaussian_blur_is_torchvisions_per_channel_with_reflected_borders(kernel_size, sigma):
    """Batched, non-square, three channels: torchvision's ``gaussian_blur`` (separable kernel,
    reflected borders) image by image. In float64 both sum the same few hundred products, so
    they agree to ~1e-15; 1e-12 leaves room for any summation order."""
    x = torch.rand(2, 3, 16, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    blurred = GaussianBlur(kernel_size, sigma)(x)
    reference = gaussian_blur(x, [kernel_size, kernel_size], [sigma, sigma])
    assert blurred.shape == x.shape and blurred.dtype == torch.float64
    torch.testing.assert_close(blurred, reference, rtol=0, atol=1e-12)


def test_gaussian_blur_kernel_is_a_normalised_gaussian_on_the_requested_device_and_dtype():
    blur = GaussianBlur(5, 1.5)
    k = blur.kernel(torch.device("cpu"), torch.float64)
    assert k.shape == (5,) and k.dtype == torch.float64
    assert torch.equal(k, k.flip(0)) and k.argmax() == 2
    torch.testing.assert_close(k.sum(), torch.tensor(1.0, dtype=torch.float64))
    # neighbours of the centre at distance d weigh exp(-d^2 / (2 sigma^2)) of it
    ratios = k[2:] / k[2]
    expected = torch.exp(-0.5 * (torch.arange(3, dtype=torch.float64) / 1.5) ** 2)
    torch.testing.assert_close(ratios, expected, rtol=1e-14, atol=0)
    assert blur.kernel(torch.device("meta"), torch.float32).device.type == "meta"
    assert (GaussianBlur().kernel_size, GaussianBlur().sigma) == (21, 5.0)  # the paper's
    assert "kernel_size=5, sigma=1.5" in repr(blur)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kernel_size": 4}, "kernel_size must be a positive odd integer, got 4"),
        ({"kernel_size": 0}, "kernel_size must be a positive odd integer, got 0"),
        ({"kernel_size": -3}, "kernel_size must be a positive odd integer, got -3"),
        ({"sigma": 0.0}, "sigma must be positive, got 0.0"),
        ({"sigma": float("nan")}, "sigma must be positive, got nan"),
    ],
)
def test_gaussian_blur_refuses_bad_sizes_and_sigmas(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        GaussianBlur(**kwargs)


def test_a_python_replacement_takes_the_inputs_precision_not_float32s():
    """0.1 replaces float64 features with float64's 0.1, not float32's 0.10000000149..."""
    inputs = torch.zeros(2, 3, dtype=torch.float64)
    out = apply_mask(inputs, torch.ones(2, 3, dtype=torch.bool), 0.1)
    assert out.dtype == torch.float64 and (out == 0.1).all()
