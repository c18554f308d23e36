"""The checks an explain run makes before any work, and its helpers (no store needed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lfxai.config import ConfigError
from lfxai.data.packed import PackedImages, pack_images
from lfxai.data.splits import Split
from lfxai.explain.pipeline import (
    check_encoder,
    class_labels,
    decoded,
    model_label,
    refuse_loss_methods,
)
from lfxai.tracking import LFXAI_MODEL, PT2_MODEL, ExplainedModel

MNIST = torch.rand(2, 1, 28, 28)


def _model(kind: str = PT2_MODEL, shape: tuple[int, ...] | None = None) -> ExplainedModel:
    return ExplainedModel(
        "models:/enc@prod", "models:/enc/3", kind, "enc", "3", "prod", input_shape=shape
    )


def _conv(channels: int, flatten: bool = True) -> nn.Module:
    layers = [nn.Conv2d(channels, 4, 3, stride=2, padding=1)]
    return nn.Sequential(*layers, nn.Flatten()) if flatten else nn.Sequential(*layers)


def test_an_encoder_of_the_data_sets_inputs_gives_its_code_size() -> None:
    assert check_encoder(_conv(1), MNIST, _model(shape=(1, 28, 28)), "mnist") == 4 * 14 * 14
    assert check_encoder(_conv(1), MNIST, _model(shape=(1, -1, -1)), "mnist") == 4 * 14 * 14


def test_another_declared_input_shape_is_refused_before_running() -> None:
    with pytest.raises(ConfigError) as error:
        check_encoder(_conv(3), MNIST, _model(shape=(3, 32, 32)), "mnist")
    assert str(error.value) == (
        "models:/enc/3 takes inputs (N, 3, 32, 32) by its signature, but dataset 'mnist' gives "
        "(N, 1, 28, 28); explain it on a data set of its input shape"
    )
    with pytest.raises(ConfigError, match=r"takes inputs \(N, 1, \*, 32\) by its signature"):
        check_encoder(_conv(1), MNIST, _model(shape=(1, -1, 32)), "mnist")  # -1: open


def test_inputs_the_module_cannot_take_are_one_line() -> None:
    with pytest.raises(ConfigError) as error:
        check_encoder(_conv(3), MNIST, _model(), "mnist")  # no signature: the module says
    message = str(error.value)
    assert message.startswith(
        "models:/enc/3 does not take the inputs of dataset 'mnist' (N, 1, 28, 28): "
    )
    assert "RuntimeError" in message and "\n" not in message

    class Refusing(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError("\n  wrong input size  \n(details on the next line)")

    with pytest.raises(ConfigError) as error:
        check_encoder(Refusing(), MNIST, _model(), "mnist")  # its first non-blank line
    assert str(error.value).endswith("(N, 1, 28, 28): ValueError: wrong input size")

    class Silent(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError()

    with pytest.raises(ConfigError) as error:
        check_encoder(Silent(), MNIST, _model(), "mnist")  # no message: the type alone
    assert str(error.value).endswith("(N, 1, 28, 28): RuntimeError")


@pytest.mark.parametrize(
    ("module", "found"),
    [
        (_conv(1, flatten=False), "(2, 4, 14, 14)"),  # feature maps, not codes
        (nn.Sequential(nn.Flatten(), nn.Flatten(0)), "(1568,)"),  # one vector for the batch
    ],
)
def test_output_that_is_not_one_code_per_input_is_refused(module, found) -> None:
    with pytest.raises(ConfigError) as error:
        check_encoder(module, MNIST, _model(), "mnist")
    assert str(error.value) == (
        f"models:/enc/3 gives {found} for 2 inputs of dataset 'mnist': label-free explanations "
        "need one code per input, (N, d); register an encoder that returns them (e.g. flatten "
        "its output)"
    )


def test_a_tuple_or_non_finite_output_is_refused() -> None:
    class Pair(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x.flatten(1), x.flatten(1)

    class Infinite(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1) / 0.0

    with pytest.raises(ConfigError, match="gives tuple for 2 inputs"):
        check_encoder(Pair(), MNIST, _model(), "mnist")
    with pytest.raises(ConfigError, match="not all finite floats"):
        check_encoder(Infinite(), MNIST, _model(), "mnist")


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        (LFXAI_MODEL, "is an lfxai encoder, registered without the decoder"),
        (PT2_MODEL, "is a pt2 graph of an encoder's forward pass, which carries no loss"),
    ],
)
def test_loss_methods_are_refused_with_the_reason(kind, why) -> None:
    refuse_loss_methods(("SimplEx", "DKNN", "Random"), _model(kind))
    with pytest.raises(ConfigError) as error:
        refuse_loss_methods(("TracIn", "DKNN", "InfluenceFunctions"), _model(kind))
    message = str(error.value)
    assert message.startswith("example_methods ['TracIn', 'InfluenceFunctions'] differentiate")
    assert f"models:/enc/3 {why}" in message
    assert message.endswith("valid example_methods for it: ['SimplEx', 'DKNN', 'Random']")


def test_multi_factor_labels_compare_their_first_factor() -> None:
    factors = torch.tensor([[2, 5, 1], [0, 5, 1]])
    assert class_labels(factors).tolist() == [2, 0]
    digits = torch.tensor([7, 1])
    assert class_labels(digits) is digits
    split = decoded(Split(torch.zeros(2, 1, 4, 4), factors))
    assert split.y.tolist() == [2, 0] and isinstance(split.x, torch.Tensor)
    images = (torch.rand(3, 1, 4, 4) > 0.5).float()
    packed = decoded(Split(PackedImages(pack_images(images), (1, 4, 4)), factors[[0, 1, 0]]))
    assert isinstance(packed.x, torch.Tensor) and torch.equal(packed.x, images)  # decoded


def test_titles_name_the_version_explained() -> None:
    assert model_label(_model()) == "enc@prod (v3)"
    plain = ExplainedModel("models:/enc/3", "models:/enc/3", PT2_MODEL, "enc", "3")
    assert model_label(plain) == "enc v3"
    folder = ExplainedModel("/tmp/model", "/tmp/model", PT2_MODEL)
    assert model_label(folder) == "/tmp/model"
