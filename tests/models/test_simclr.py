"""SimCLR: the CIFAR ResNet-18, NT-Xent, per-image batched augmentations, strict loading."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lfxai.models.autoencoder import load_state_strict
from lfxai.models.registry import ModelSpec, build_model
from lfxai.models.simclr import (
    FEATURE_DIM,
    PROJECTION_DIM,
    BatchAugment,
    SimCLR,
    SimCLREncoder,
    _autocast_dtype,
    hsv_to_rgb,
    nt_xent,
    rgb_to_hsv,
)


@pytest.fixture(scope="module")
def model() -> SimCLR:
    torch.manual_seed(0)
    return SimCLR().eval()


def test_shapes_and_the_32x32_stem(model):
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        codes = model(x)
        assert codes.shape == (3, FEATURE_DIM)
        torch.testing.assert_close(codes, model.encoder(x), rtol=0, atol=0)
        assert model.projector(codes).shape == (3, PROJECTION_DIM)
    stem = model.encoder.backbone.conv1
    assert (stem.kernel_size, stem.stride, stem.padding) == ((3, 3), (1, 1), (1, 1))
    assert isinstance(model.encoder.backbone.maxpool, nn.Identity)
    assert isinstance(model.encoder.backbone.fc, nn.Identity)
    loss = model.loss(x, None)
    assert loss.shape == () and torch.isfinite(loss)


def test_registry_builds_it_and_refuses_another_width():
    spec = ModelSpec(FEATURE_DIM, (3, 32, 32), "reconstruction", "m")
    assert isinstance(build_model("simclr_resnet18", spec), SimCLR)
    with pytest.raises(ValueError, match=r"512 encoder features.*dim_latent=64"):
        build_model("simclr_resnet18", ModelSpec(64, (3, 32, 32)))
    with pytest.raises(ValueError, match=r"takes inputs of shape \(3, 32, 32\)"):
        build_model("simclr_resnet18", ModelSpec(FEATURE_DIM, (1, 28, 28)))


def _nt_xent_reference(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """The formula written out: for each of the 2N views, -log of its partner's softmax
    share among all other views, by cosine similarity over the temperature."""
    views = [*z1.double(), *z2.double()]
    n = len(z1)
    total = 0.0
    for i, a in enumerate(views):
        partner = i + n if i < n else i - n

        def sim(b: torch.Tensor, a: torch.Tensor = a) -> float:
            return float(a @ b / (a.norm() * b.norm())) / temperature

        denominator = sum(math.exp(sim(b)) for k, b in enumerate(views) if k != i)
        total += -math.log(math.exp(sim(views[partner])) / denominator)
    return total / (2 * n)


@pytest.mark.parametrize("temperature", [0.5, 0.1])
def test_nt_xent_equals_the_formula(temperature):
    generator = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(4, 6, generator=generator), torch.randn(4, 6, generator=generator)
    ours = nt_xent(z1, z2, temperature).item()
    assert ours == pytest.approx(_nt_xent_reference(z1, z2, temperature), rel=1e-5)
    # Aligned pairs (each view's partner is itself, up to scale) lose less than random ones.
    assert nt_xent(z1, 2 * z1, temperature).item() < ours


def test_augmentations_differ_per_image_and_stay_images():
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    batch = image.expand(16, -1, -1, -1).contiguous()
    out = BatchAugment()(batch, torch.Generator().manual_seed(1))
    assert out.shape == batch.shape and out.min() >= 0 and out.max() <= 1
    flat = out.flatten(1)
    distances = torch.cdist(flat, flat) + torch.eye(16) * 1e9
    assert distances.min() > 1e-3  # 16 copies of one image: 16 different views
    again = BatchAugment()(batch, torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, again, rtol=0, atol=0)  # a seeded generator reproduces


def test_full_crop_without_colour_is_the_image_or_its_mirror():
    x = torch.rand(32, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    plain = BatchAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), p_jitter=0.0, p_gray=0.0)
    out = plain(x, torch.Generator().manual_seed(2))
    same = (out - x).flatten(1).abs().amax(dim=1) < 1e-5
    mirrored = (out - x.flip(-1)).flatten(1).abs().amax(dim=1) < 1e-5
    assert bool((same | mirrored).all()) and 0 < int(mirrored.sum()) < 32


def test_crop_keeps_every_image_inside_and_varies_its_scale():
    """A crop of a constant-per-column image only samples columns it contains."""
    columns = torch.linspace(0, 1, 32).view(1, 1, 1, 32).expand(64, 3, 32, 32).contiguous()
    augment = BatchAugment(p_jitter=0.0, p_gray=0.0)
    out = augment.crop_flip(columns, torch.Generator().manual_seed(4))
    assert out.min() >= 0 and out.max() <= 1
    spans = out[:, 0, 16].amax(dim=1) - out[:, 0, 16].amin(dim=1)  # share of the width seen
    assert spans.min() < 0.5 < spans.max()


def test_hsv_round_trip_and_known_colours():
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x, rtol=0, atol=1e-5)
    colours = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.5, 0.5, 0.5]])
    hsv = rgb_to_hsv(colours.view(4, 3, 1, 1)).view(4, 3)
    expected = torch.tensor([[0, 1, 1], [1 / 3, 1, 1], [2 / 3, 1, 1], [0, 0, 0.5]])
    torch.testing.assert_close(hsv, expected, rtol=0, atol=1e-6)


def test_grayscale_and_jitter_only_where_drawn():
    x = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    gray_only = BatchAugment(crop_scale=(1.0, 1.0), p_jitter=0.0, p_gray=1.0)
    out = gray_only(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[:, 0], out[:, 1], rtol=0, atol=0)
    torch.testing.assert_close(out[:, 1], out[:, 2], rtol=0, atol=0)
    jitter = BatchAugment().color_jitter(x, torch.Generator().manual_seed(0))
    assert jitter.min() >= 0 and jitter.max() <= 1
    # Each image gets its own factors: per-image mean brightness ratios are not all equal.
    ratios = jitter.mean(dim=(1, 2, 3)) / x.mean(dim=(1, 2, 3))
    assert ratios.std() > 0.05


def test_eval_views_are_fixed_and_training_views_are_not(model):
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert model.loss(x).item() == model.loss(x).item()
        model.train()
        try:
            first, second = model.views(x)
            assert not torch.equal(first, second)
        finally:
            model.eval()
    assert _autocast_dtype(torch.device("cpu")) is None  # the CPU path stays float32


def test_strict_loading_names_what_does_not_fit():
    torch.manual_seed(1)
    source, target = SimCLREncoder(), SimCLREncoder()
    load_state_strict(target, source.state_dict(), "models:/x/1")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(target.eval()(x), source.eval()(x), rtol=0, atol=0)
    state = dict(source.state_dict())
    state.pop("backbone.layer4.1.bn2.weight")
    state["head.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as error:
        load_state_strict(target, state, "models:/x/2")
    message = str(error.value)
    assert "models:/x/2" in message and "SimCLREncoder" in message
    assert "missing keys ['backbone.layer4.1.bn2.weight']" in message
    assert "unexpected keys ['head.weight']" in message
    state = dict(source.state_dict())
    state["backbone.conv1.weight"] = torch.zeros(64, 3, 7, 7)  # torchvision's ImageNet stem
    with pytest.raises(ValueError, match=r"backbone.conv1.weight \(64, 3, 7, 7\) \(expected "):
        load_state_strict(target, state, "models:/x/3")


def test_the_stem_has_no_bias_and_the_head_is_an_mlp(model):
    """A bias before batch norm is redundant (torchvision's ResNets have none); the head is
    SimCLR's Linear-ReLU-Linear from the 512 features to 128."""
    assert model.encoder.backbone.conv1.bias is None
    head = list(model.projector)
    assert [type(layer) for layer in head] == [nn.Linear, nn.ReLU, nn.Linear]
    assert (head[0].in_features, head[0].out_features) == (FEATURE_DIM, FEATURE_DIM)
    assert (head[2].in_features, head[2].out_features) == (FEATURE_DIM, PROJECTION_DIM)
    assert model.name == "simclr" and SimCLR(name="other").name == "other"


def test_a_given_augmentation_is_the_one_used():
    class Identity(nn.Module):
        def forward(self, x, generator=None):
            return x

    model = SimCLR(augment=Identity()).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    first, second = model.views(x)
    assert isinstance(model.augment, Identity)
    assert torch.equal(first, x) and torch.equal(second, x)


def test_the_cpu_loss_is_float32_nt_xent_at_the_models_temperature():
    """No autocast on the CPU (CPU autocast would run the ResNet in bfloat16, off by ~1e-2),
    and the model's own temperature, not the default."""
    torch.manual_seed(2)
    model = SimCLR(temperature=0.1).eval()
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        v1, v2 = model.views(x)
        z1, z2 = model.projector(model.encoder(torch.cat([v1, v2]))).chunk(2)
        expected = nt_xent(z1, z2, 0.1)
        assert model.loss(x).item() == pytest.approx(expected.item(), rel=1e-6)
        assert abs(expected.item() - nt_xent(z1, z2).item()) > 1e-3  # the test can tell


def test_bf16_autocast_only_on_cuda_gpus_that_support_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert _autocast_dtype(torch.device("cuda")) is torch.bfloat16
    assert _autocast_dtype(torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert _autocast_dtype(torch.device("cuda")) is None
