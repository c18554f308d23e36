"""SimCLR's batched augmentations against their definitions: torchvision's colour functions
image by image, the crop's geometry read off coordinate ramps, the published defaults."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from lfxai.models.simclr import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    BatchAugment,
    Normalize,
    SimCLREncoder,
    _uniform,
    rgb_to_hsv,
)

SIDE = 32


def ramps(n: int) -> torch.Tensor:
    """``(n, 3, SIDE, SIDE)`` images whose channel 0 is each pixel centre's x and channel 1
    its y in ``affine_grid``'s coordinates (``align_corners=False``); channel 2 is 0.

    Bilinear sampling of a linear ramp returns the sampled coordinate itself, so a crop's
    output shows which part of the image it saw (up to half a pixel at the border).
    """
    centres = (2 * torch.arange(SIDE) + 1) / SIDE - 1
    image = torch.zeros(3, SIDE, SIDE)
    image[0] = centres.view(1, SIDE).expand(SIDE, SIDE)
    image[1] = centres.view(SIDE, 1).expand(SIDE, SIDE)
    return image.expand(n, -1, -1, -1).contiguous()


def spans(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the range of x and of y that the crop saw."""
    x, y = out[:, 0].flatten(1), out[:, 1].flatten(1)
    return x.amax(1) - x.amin(1), y.amax(1) - y.amin(1)


def test_the_published_defaults():
    """SimCLR's CIFAR augmentations: crop area 8-100 %, ratio 3/4-4/3, jitter 0.4 (hue 0.1)
    with p = 0.8, grayscale with p = 0.2 (Chen et al. 2020, appendix A)."""
    augment = BatchAugment()
    assert augment.crop_scale == (0.08, 1.0)
    assert augment.crop_ratio == pytest.approx((3 / 4, 4 / 3))
    assert (augment.jitter, augment.hue) == (0.4, 0.1)
    assert (augment.p_jitter, augment.p_gray) == (0.8, 0.2)


def test_grayscale_and_jitter_are_drawn_at_their_probabilities():
    n = 4_000
    x = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    gray = BatchAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), p_jitter=0.0, p_gray=0.3)
    out = gray(x, torch.Generator().manual_seed(1))
    grayed = (out[:, 0] == out[:, 1]).flatten(1).all(1) & (out[:, 1] == out[:, 2]).flatten(1).all(1)
    assert abs(grayed.float().mean().item() - 0.3) < 0.04  # 5.5 standard errors
    jitter = BatchAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), p_jitter=0.6, p_gray=0.0)
    out = jitter(x, torch.Generator().manual_seed(2))
    # Unjittered images are the image or its mirror (a full crop); jittered ones are neither.
    plain = torch.minimum(
        (out - x).flatten(1).abs().amax(1), (out - x.flip(-1)).flatten(1).abs().amax(1)
    )
    assert abs((plain > 1e-4).float().mean().item() - 0.6) < 0.045


def test_uniform_draws_cover_the_interval():
    draws = _uniform(20_000, 2.0, 3.0, torch.zeros(1), torch.Generator().manual_seed(0))
    assert draws.min() >= 2.0 and draws.max() <= 3.0
    assert draws.min() < 2.01 and draws.max() > 2.99
    assert draws.mean().item() == pytest.approx(2.5, abs=0.01)


@pytest.mark.parametrize("ratio", [2.0, 0.5])
def test_a_whole_image_crop_is_clipped_to_the_image(ratio):
    """Area 1 at an aspect ratio of 2 asks for a crop wider than the image: its sides are
    clipped to the image's, so the crop sees the whole image (its x mirrored at random)."""
    x = ramps(16)
    augment = BatchAugment(crop_scale=(1.0, 1.0), crop_ratio=(ratio, ratio))
    out = augment.crop_flip(x, torch.Generator().manual_seed(0))
    long_axis, short_axis = (0, 1) if ratio > 1 else (1, 0)
    if long_axis == 0:
        torch.testing.assert_close(out[:, 0].abs(), x[:, 0].abs(), rtol=0, atol=1e-5)
    else:
        torch.testing.assert_close(out[:, 1], x[:, 1], rtol=0, atol=1e-5)
    # The other side is 1 / sqrt(2) of the image's: sqrt(area / ratio) or sqrt(area * ratio).
    # (A crop at the border loses up to half a pixel to the border's clamping.)
    short, expected = spans(out)[short_axis], 2 * 0.5**0.5 * (1 - 1 / SIDE)
    assert short.max() < expected + 1e-5 and short.min() > expected - 1 / SIDE


def test_crops_have_the_drawn_aspect_and_lie_anywhere_inside():
    """Area 1/4 and width / height 2: sides sqrt(1/2) and sqrt(1/8) of the image's, centred
    anywhere that keeps the crop inside (so its full extent is always seen)."""
    n = 400
    augment = BatchAugment(crop_scale=(0.25, 0.25), crop_ratio=(2.0, 2.0))
    out = augment.crop_flip(ramps(n), torch.Generator().manual_seed(3))
    width, height = 0.5**0.5, 0.125**0.5  # half-sides in [-1, 1] coordinates
    span_x, span_y = spans(out)
    # Sampled at SIDE points spaced 2 * width / SIDE, clipped by at most half a pixel.
    assert span_x.min() > 2 * width * (1 - 1 / SIDE) - 1 / SIDE
    assert span_x.max() < 2 * width * (1 - 1 / SIDE) + 1e-5
    assert span_y.min() > 2 * height * (1 - 1 / SIDE) - 1 / SIDE
    assert span_y.max() < 2 * height * (1 - 1 / SIDE) + 1e-5
    # Centres: uniform over [-(1 - side), 1 - side] on each axis.
    centre_x, centre_y = out[:, 0].mean(dim=(1, 2)), out[:, 1].mean(dim=(1, 2))
    for centre, side in ((centre_x, width), (centre_y, height)):
        assert centre.abs().max() <= 1 - side + 1 / SIDE
        assert centre.min() < -0.8 * (1 - side) and centre.max() > 0.8 * (1 - side)
        assert abs(centre.mean().item()) < 0.1 * (1 - side)


def test_crops_near_the_border_repeat_the_border_not_black():
    ones = torch.ones(300, 3, SIDE, SIDE)
    out = BatchAugment().crop_flip(ones, torch.Generator().manual_seed(5))
    torch.testing.assert_close(out, ones, rtol=0, atol=1e-6)


def test_augmentations_keep_a_double_batch_double():
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = BatchAugment()(x, torch.Generator().manual_seed(1))
    assert out.dtype == torch.float64 and out.shape == x.shape


def _torchvision_jitter(x: torch.Tensor, augment: BatchAugment, seed: int) -> torch.Tensor:
    """torchvision's colour functions image by image, with the factors :class:`BatchAugment`
    draws from the same seed: brightness, contrast, saturation (one uniform draw per image
    each), then the hue shift. torchvision's tensor grayscale weighs red 0.2989 where ITU-R
    601 (and PIL, and ours) say 0.299: the two differ by ~1e-4."""
    generator = torch.Generator().manual_seed(seed)
    n, low, high = len(x), 1 - augment.jitter, 1 + augment.jitter
    brightness, contrast, saturation = (
        low + (high - low) * torch.rand(n, generator=generator) for _ in range(3)
    )
    hue = -augment.hue + 2 * augment.hue * torch.rand(n, generator=generator)
    images = []
    for i, image in enumerate(x):
        image = TF.adjust_brightness(image, brightness[i].item())
        image = TF.adjust_contrast(image, contrast[i].item())
        image = TF.adjust_saturation(image, saturation[i].item())
        images.append(TF.adjust_hue(image, hue[i].item()))
    return torch.stack(images)


@pytest.mark.parametrize(("jitter", "hue"), [(0.4, 0.1), (0.9, 0.5)])
def test_colour_jitter_is_torchvisions_per_image(jitter, hue):
    x = torch.rand(24, 3, 6, 6, generator=torch.Generator().manual_seed(8))
    x[:4] = x[:4].mean(dim=1, keepdim=True)  # gray images: hue undefined, saturation 0
    x[4, :, 0, 0] = 0.0  # a black pixel
    augment = BatchAugment(jitter=jitter, hue=hue)
    ours = augment.color_jitter(x, torch.Generator().manual_seed(9))
    torch.testing.assert_close(ours, _torchvision_jitter(x, augment, 9), rtol=0, atol=1e-3)


def test_no_jitter_and_no_hue_leave_the_image():
    x = torch.rand(8, 3, 6, 6, generator=torch.Generator().manual_seed(10))
    out = BatchAugment(jitter=0.0, hue=0.0).color_jitter(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x, rtol=0, atol=1e-5)


def test_black_and_gray_pixels_have_zero_hue_and_saturation():
    pixels = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.3, 0.3], [1.0, 1.0, 1.0]]).view(3, 3, 1, 1)
    hsv = rgb_to_hsv(pixels).view(3, 3)
    expected = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.3], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(hsv, expected, rtol=0, atol=0)


def test_the_encoder_normalises_each_channel_by_cifar10s_statistics():
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    mean, std = torch.tensor(CIFAR10_MEAN), torch.tensor(CIFAR10_STD)
    expected = (x - mean.view(3, 1, 1)) / std.view(3, 1, 1)
    torch.testing.assert_close(SimCLREncoder().normalize(x), expected, rtol=1e-6, atol=1e-6)
    # Stored encoders hold these buffers: their shapes are part of the state-dict format.
    normalize = Normalize((0.1, 0.2, 0.3), (1.0, 2.0, 4.0))
    assert normalize.mean.shape == normalize.std.shape == (1, 3, 1, 1)
