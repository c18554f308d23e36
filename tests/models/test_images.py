"""The MNIST models: shapes, the reference architecture's sizes, and each model's loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lfxai.models.images import AutoEncoderMnist, ClassifierMnist, DecoderMnist, EncoderMnist


@pytest.fixture()
def images() -> torch.Tensor:
    return torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_encoder_and_decoder_shapes_and_range(images):
    torch.manual_seed(0)
    encoder, decoder = EncoderMnist(5).eval(), DecoderMnist(5).eval()
    codes = encoder(images)
    assert codes.shape == (4, 5) and encoder.encoded_space_dim == 5
    assert encoder.encoder_lin[0].in_features == 3 * 3 * 32  # 28 -> 14 -> 7 -> 3
    out = decoder(codes)
    assert out.shape == images.shape
    assert bool(((out >= 0) & (out <= 1)).all())  # a sigmoid output


def test_autoencoder_loss_is_mse_against_the_input(images):
    torch.manual_seed(0)
    model = AutoEncoderMnist(EncoderMnist(3), DecoderMnist(3), 3).eval()
    assert model.target == "input"
    assert model.loss(images).item() == F.mse_loss(model(images), images).item()


def test_classifier_is_the_encoder_with_a_linear_head_and_a_label_loss(images):
    torch.manual_seed(0)
    encoder = EncoderMnist(3)
    model = ClassifierMnist(encoder, 3, n_classes=7, name="clf").eval()
    assert model.target == "label" and model.name == "clf" and model.encoder is encoder
    logits = model(images)
    assert logits.shape == (4, 7)
    assert torch.equal(logits, model.lin_output(encoder(images)))
    labels = torch.tensor([0, 6, 3, 3])
    assert model.loss(images, labels).item() == F.cross_entropy(logits, labels).item()
    assert isinstance(model.loss_f, nn.CrossEntropyLoss)
    with pytest.raises(ValueError, match="ClassifierMnist.loss needs labels y"):
        model.loss(images)
    assert ClassifierMnist(EncoderMnist(3), 3).lin_output.out_features == 10  # digits


def _layers(module: nn.Module) -> list[str]:
    return [repr(m) for m in module.modules() if not list(m.children())]


def test_the_encoder_and_decoder_are_the_references_layers_in_its_order():
    """The paper's MNIST autoencoder, layer for layer (kernels, strides, paddings, batch
    norms and ReLUs): a shape-preserving change (a kernel of 4, a padding of 2, a ReLU or a
    batch norm less) would still train, but it would not be the paper's model."""
    relu, bn16 = "ReLU(inplace=True)", "BatchNorm2d(16, eps=1e-05, momentum=0.1, affine=True, "
    bn16 += "bias=True, track_running_stats=True)"
    bn8 = bn16.replace("16,", "8,")
    assert _layers(EncoderMnist(4)) == [
        "Conv2d(1, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))",
        relu,
        "Conv2d(8, 16, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))",
        bn16,
        relu,
        "Conv2d(16, 32, kernel_size=(3, 3), stride=(2, 2))",
        relu,
        "Flatten(start_dim=1, end_dim=-1)",
        "Linear(in_features=288, out_features=128, bias=True)",
        relu,
        "Linear(in_features=128, out_features=4, bias=True)",
    ]
    assert _layers(DecoderMnist(4)) == [
        "Linear(in_features=4, out_features=128, bias=True)",
        relu,
        "Linear(in_features=128, out_features=288, bias=True)",
        relu,
        "Unflatten(dim=1, unflattened_size=(32, 3, 3))",
        "ConvTranspose2d(32, 16, kernel_size=(3, 3), stride=(2, 2))",
        bn16,
        relu,
        "ConvTranspose2d(16, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), "
        "output_padding=(1, 1))",
        bn8,
        relu,
        "ConvTranspose2d(8, 1, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), "
        "output_padding=(1, 1))",
    ]


def test_the_classifier_keeps_its_code_size_and_default_name():
    classifier = ClassifierMnist(EncoderMnist(3), 3)
    assert (classifier.latent_dim, classifier.name) == (3, "model")
    assert classifier.lin_output.out_features == 10
