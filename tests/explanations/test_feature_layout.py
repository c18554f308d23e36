"""Attributions run a CPU encoder's convolutions channels-last: same scores, model restored."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from torch import nn

from lfxai.explanations import features
from lfxai.explanations.features import attribute_auxiliary, attribute_individual_dim
from lfxai.training import channels_last_on_cpu

CPU = torch.device("cpu")


def _conv_encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 3),
    ).eval()


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    x = torch.rand(10, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    return [(x[:6], torch.zeros(6)), (x[6:], torch.zeros(4))]


def _layouts_seen(encoder: nn.Module) -> list[bool]:
    """Whether the 4 -> 8 convolution's weight was channels-last at each of its calls."""
    seen: list[bool] = []
    conv = encoder[2]
    conv.register_forward_hook(
        lambda m, i, o: seen.append(
            not m.weight.is_contiguous()
            and m.weight.is_contiguous(memory_format=torch.channels_last)
        )
    )
    return seen


@contextmanager
def _unchanged(model: nn.Module, device: torch.device) -> Iterator[bool]:
    yield False


def _explain(method: type, individual: bool, layout: bool) -> tuple[np.ndarray, list[bool]]:
    encoder = _conv_encoder()
    parameters = list(encoder.parameters())
    seen = _layouts_seen(encoder)
    baseline = torch.full((1, 1, 16, 16), 0.1)
    with pytest.MonkeyPatch.context() as patch:
        if not layout:
            patch.setattr(features, "channels_last_on_cpu", _unchanged)
        if individual:
            scores = attribute_individual_dim(
                encoder, 3, _batches(), CPU, method(encoder), baseline, progress=False
            )
        else:
            scores = attribute_auxiliary(
                encoder, _batches(), CPU, method(encoder), baseline, progress=False
            )
    # The encoder comes back as it was: the same parameters, in the default layout.
    assert list(encoder.parameters()) == parameters
    assert all(p.is_contiguous() for p in parameters)
    return scores, seen


@pytest.mark.parametrize("individual", [False, True], ids=["auxiliary", "individual_dim"])
@pytest.mark.parametrize("method", [IntegratedGradients, Saliency], ids=lambda m: m.__name__)
def test_attributions_in_the_channels_last_layout_equal_the_default_ones(method, individual):
    fast, seen = _explain(method, individual, layout=True)
    assert seen and all(seen)  # every call ran in the channels-last layout
    plain, seen = _explain(method, individual, layout=False)
    assert seen and not any(seen)
    assert fast.shape == plain.shape == ((10, 3, 16, 16) if individual else (10, 1, 16, 16))
    assert fast.flags.c_contiguous  # handed back in the default layout, as the inputs came
    np.testing.assert_allclose(fast, plain, rtol=1e-4, atol=1e-6)


def test_the_layout_is_restored_when_the_block_raises():
    encoder = _conv_encoder()
    with pytest.raises(RuntimeError, match="inside"), channels_last_on_cpu(encoder, CPU) as done:
        assert done and encoder[0].weight.is_contiguous(memory_format=torch.channels_last)
        raise RuntimeError("inside")
    assert all(p.is_contiguous() for p in encoder.parameters())


def test_models_without_convolutions_and_other_devices_are_left_alone():
    linear = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with channels_last_on_cpu(linear, CPU) as done:
        assert not done
    encoder = _conv_encoder()
    with channels_last_on_cpu(encoder, torch.device("cuda")) as done:  # never moves it there
        assert not done and encoder[0].weight.is_contiguous()
