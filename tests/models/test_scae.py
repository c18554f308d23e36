"""The Stacked Capsule Autoencoder: shapes, templates placed by poses, noise, its objective."""

from __future__ import annotations

import math

import pytest
import torch

from lfxai.explanations.examples.per_sample_grads import LossFunctional
from lfxai.models.registry import ModelSpec, build_model
from lfxai.models.scae import StackedCapsuleAutoencoder, compose, place_templates, pose_matrix


def _small(**kwargs) -> StackedCapsuleAutoencoder:
    """A narrow SCAE (the architecture, with fewer channels and capsules) for fast tests."""
    torch.manual_seed(0)
    options = dict(n_parts=4, n_objects=3, n_channels=8, batch_size=6)
    return StackedCapsuleAutoencoder(**{**options, **kwargs})


def _identity(batch: int, k: int) -> torch.Tensor:
    return torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand(batch, k, 2, 3)


def test_paper_sized_model_has_24_part_capsules_of_144_values() -> None:
    model = build_model("mnist_scae", ModelSpec(4, (1, 28, 28), name="scae")).eval()
    x = torch.rand(3, 1, 28, 28)
    assert model.encoder(x).shape == (3, 24 * 144) and model.latent_dim == 24 * 144
    caps = model.encoder.capsules(x)
    assert caps.pose.shape == (3, 24, 2, 3) and caps.features.shape == (3, 24, 16)
    assert caps.presence.shape == (3, 24)
    assert torch.all((caps.presence >= 0) & (caps.presence <= 1))
    assert model.encoder.templates.shape == (24, 11, 11)
    assert model(x).shape == x.shape
    votes = model.object_decoder(caps)
    assert votes["votes"].shape == (3, 24, 24, 6) and votes["object_presence"].shape == (3, 24)
    assert model.max_grad_norm == 5.0
    assert model.optimizer_options["eps"] == pytest.approx(1 / (10 * 128) ** 2)
    # Each capsule's 144 values: presence, the 2x3 pose, the 11x11 template, 16 features.
    code = model.encoder(x).view(3, 24, 144)
    torch.testing.assert_close(code[..., 0], caps.presence)
    torch.testing.assert_close(code[..., 1:7], caps.pose.flatten(2))
    torch.testing.assert_close(code[0, :, 7:128], model.encoder.templates.flatten(1))
    torch.testing.assert_close(code[..., 128:], caps.features)


def test_identity_pose_reproduces_the_templates() -> None:
    templates = torch.rand(5, 11, 11)
    placed = place_templates(templates, _identity(2, 5), size=11)
    torch.testing.assert_close(placed, templates.expand(2, -1, -1, -1), rtol=0, atol=1e-5)


def test_a_half_scale_translated_pose_puts_the_template_in_a_corner() -> None:
    # Output pixel i sits at -1 + i/10 (21 pixels); scale 1/2 and shift -1/2 send it to
    # template coordinate -1 + i/5, i.e. template pixel i: the top-left 11x11 block.
    templates = torch.rand(3, 11, 11) + 0.1
    pose = torch.tensor([[0.5, 0, -0.5], [0, 0.5, -0.5]]).expand(1, 3, 2, 3)
    placed = place_templates(templates, pose, size=21)[0]
    torch.testing.assert_close(placed[:, :11, :11], templates, rtol=0, atol=1e-5)
    assert placed[:, 11:].abs().max() < 1e-5 and placed[:, :, 11:].abs().max() < 1e-5


def test_pose_matrix_and_composition() -> None:
    raw = torch.zeros(6)
    raw[0] = raw[1] = math.log(0.95 / 0.05)  # sigmoid = 0.95, scale 0.05 + 0.95 = 1
    torch.testing.assert_close(pose_matrix(raw), _identity(1, 1)[0, 0], rtol=0, atol=1e-6)
    a, b = pose_matrix(torch.randn(4, 6)), pose_matrix(torch.randn(4, 6))
    homogeneous = torch.tensor([[0.0, 0, 1]]).expand(4, 1, 3)
    full = torch.cat([a, homogeneous], 1) @ torch.cat([b, homogeneous], 1)
    torch.testing.assert_close(compose(a, b), full[:, :2], rtol=1e-5, atol=1e-6)


def test_presence_noise_only_while_training() -> None:
    model = _small()
    x = torch.rand(6, 1, 28, 28)
    model.eval()
    first, second = model.encoder.capsules(x), model.encoder.capsules(x)
    torch.testing.assert_close(first.presence, second.presence, rtol=0, atol=0)
    torch.testing.assert_close(model.loss(x), model.loss(x), rtol=0, atol=0)
    model.train()
    noisy = model.encoder.capsules(x)
    assert not torch.allclose(noisy.presence, first.presence)
    torch.testing.assert_close(noisy.pose, first.pose)  # only the presence logits are noised
    torch.testing.assert_close(noisy.features, first.features)


def test_loss_is_finite_and_trains_every_part() -> None:
    model = _small().train()
    x = torch.rand(6, 1, 28, 28)
    terms = model.terms(x)
    assert all(torch.isfinite(v) for v in terms.values())
    # Fresh noise per call: compare in eval mode, where the objective is deterministic.
    model.eval()
    terms, loss = model.terms(x), model.loss(x)
    expected = (
        -terms["image_log_likelihood"]
        - terms["part_log_likelihood"]
        + terms["prior_sparsity"]
        + 10 * terms["posterior_sparsity"]
    )
    torch.testing.assert_close(loss, expected)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.encoder.template_logits.grad.abs().sum() > 0
    assert model.encoder.cnn[0].weight.grad.abs().sum() > 0
    assert model.object_decoder.set_transformer.blocks[0].inducing.grad.abs().sum() > 0


def test_part_likelihood_does_not_reach_the_part_encoder() -> None:
    model = _small().eval()
    x = torch.rand(6, 1, 28, 28)
    model.terms(x)["part_log_likelihood"].backward()
    assert (
        model.encoder.cnn[0].weight.grad is None
        or model.encoder.cnn[0].weight.grad.abs().sum() == 0
    )
    assert model.object_decoder.w2.grad.abs().sum() > 0


def test_per_example_gradients_for_the_explainers() -> None:
    """vmap(grad) of a batch of one equals plain autograd on that example alone."""
    model = _small().eval()
    x = torch.rand(2, 1, 28, 28)
    functional = LossFunctional(model)
    params, fixed = functional.split()
    grads = functional.per_example_grads(params, fixed, x, x, chunk_size=2)
    assert grads.shape == (2, sum(p.numel() for p in model.encoder.parameters()))
    model.zero_grad()
    model.loss(x[1:]).backward()
    direct = torch.cat([p.grad.flatten() for p in model.encoder.parameters()])
    torch.testing.assert_close(grads[1], direct, rtol=1e-4, atol=1e-5)


def test_training_loop_clips_gradients_and_passes_the_optimiser_eps(monkeypatch) -> None:
    from torch import nn

    from lfxai import training
    from lfxai.data.splits import Split

    model = _small()
    norms, made = [], []
    clip = nn.utils.clip_grad_norm_
    monkeypatch.setattr(
        nn.utils,
        "clip_grad_norm_",
        lambda params, max_norm: norms.append(max_norm) or clip(params, max_norm),
    )
    make = training.make_optimizer
    monkeypatch.setattr(
        training, "make_optimizer", lambda *a, **k: made.append(make(*a, **k)) or made[-1]
    )
    data = Split(torch.rand(12, 1, 28, 28), torch.zeros(12, dtype=torch.long))
    settings = training.TrainingSettings(
        n_epochs=1, batch_size=6, lr=1e-5, weight_decay=0.0, optimizer="rmsprop"
    )
    result = training.fit(model, data, data, torch.device("cpu"), settings, progress=False)
    assert norms == [5.0, 5.0]  # once per batch
    group = made[0].param_groups[0]
    assert group["eps"] == pytest.approx(1 / 60**2) and group["momentum"] == 0.9
    assert math.isfinite(result.train_loss[0]) and math.isfinite(result.test_loss[0])
