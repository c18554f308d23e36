"""The SCAE's parts against their definitions (Kosiorek et al. 2019), written out one image,
one capsule at a time in float64: poses, template placement, attention pooling, the object
capsules' votes, the four terms of the objective, the paper's settings."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal

from lfxai.models.scae import (
    EPS,
    ObjectCapsuleDecoder,
    PartCapsuleEncoder,
    PartCapsules,
    StackedCapsuleAutoencoder,
    place_templates,
    pose_matrix,
    rmsprop_eps,
)


@pytest.fixture(scope="module")
def model() -> StackedCapsuleAutoencoder:
    torch.manual_seed(0)
    return StackedCapsuleAutoencoder(
        n_parts=3, n_objects=2, n_features=4, template_size=5, n_channels=4, batch_size=6
    ).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    x[3] = 0.02  # a flat image: its likelihood's std is clamped at 0.05
    return x


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """float32 results against a float64 reference."""
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def _homogeneous(pose: torch.Tensor) -> torch.Tensor:
    row = torch.tensor([0.0, 0.0, 1.0], dtype=pose.dtype).expand(*pose.shape[:-2], 1, 3)
    return torch.cat([pose, row], dim=-2)


def test_rmsprop_eps_is_the_papers():
    assert rmsprop_eps(128) == 1 / 1280**2 and rmsprop_eps(1) == 1 / 100


def test_pose_matrix_is_rotation_times_scale_and_shear_plus_translation():
    raw = torch.randn(5, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for r, pose in zip(raw, pose_matrix(raw), strict=True):
        sx, sy = 0.05 + torch.sigmoid(r[0]), 0.05 + torch.sigmoid(r[1])
        c, s = torch.cos(r[2]), torch.sin(r[2])
        rotation = torch.stack([torch.stack([c, -s]), torch.stack([s, c])])
        upper = torch.stack([torch.stack([sx, torch.tanh(r[3])]), torch.stack([0 * sx, sy])])
        translation = torch.tanh(r[4:6]).view(2, 1)
        torch.testing.assert_close(pose, torch.cat([rotation @ upper, translation], dim=1))


def test_place_templates_inverts_each_pose():
    """Pixel u of the output shows the template at pose^-1(u) (bilinear, zero outside)."""
    generator = torch.Generator().manual_seed(3)
    templates = torch.rand(3, 7, 7, generator=generator)
    pose = pose_matrix(torch.randn(2, 3, 6, generator=generator))
    placed = place_templates(templates, pose, size=9)
    inverse = torch.linalg.inv(_homogeneous(pose.double())).float()[..., :2, :]
    for b in range(2):
        for k in range(3):
            grid = nn.functional.affine_grid(inverse[b, k : k + 1], [1, 1, 9, 9], True)
            expected = nn.functional.grid_sample(templates[k][None, None], grid, align_corners=True)
            torch.testing.assert_close(placed[b, k], expected[0, 0], rtol=1e-4, atol=1e-5)


def test_a_quarter_turn_rotates_the_template():
    """Rotation by +90 degrees (x -> y, y -> -x in image coordinates, y pointing down):
    output pixel (row r, column c) shows template pixel (row n - 1 - c, column r)."""
    template = torch.rand(1, 5, 5, generator=torch.Generator().manual_seed(4))
    quarter = torch.tensor([[[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]]])
    placed = place_templates(template, quarter, size=5)[0, 0]
    torch.testing.assert_close(placed, template[0].flip(0).T, rtol=0, atol=1e-5)


def test_the_part_encoder_pools_each_capsule_by_its_attention_map(model, images):
    encoder = model.encoder
    strides = [m.stride for m in encoder.cnn if isinstance(m, nn.Conv2d)]
    assert strides == [(2, 2), (2, 2), (1, 1), (1, 1)]
    assert [type(m) for m in encoder.cnn] == [nn.Conv2d, nn.ReLU] * 4
    assert all(m.kernel_size == (3, 3) and m.padding == (1, 1) for m in encoder.cnn[::2])
    assert encoder.head.kernel_size == (1, 1) and encoder.head.out_channels == 3 * (6 + 1 + 4 + 1)
    caps = encoder.capsules(images)
    maps = encoder.head(encoder.cnn(images)).double()
    n_maps = encoder.n_maps
    for b in range(len(images)):
        for k in range(3):
            capsule = maps[b, k * n_maps : (k + 1) * n_maps].flatten(1)  # (maps, positions)
            pooled = capsule[:-1] @ torch.softmax(capsule[-1], dim=0)
            _close(caps.pose[b, k].double(), pose_matrix(pooled[:6]))
            _close(caps.presence[b, k].double(), torch.sigmoid(pooled[6]))
            _close(caps.features[b, k].double(), pooled[7:])


def _noise(clean: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    """The noise added to presence logits: logit(noisy) - logit(clean)."""
    return torch.logit(noisy.double()) - torch.logit(clean.double())


def test_presence_noise_is_uniform_within_the_scale():
    """Uniform in [-2, 2] on each presence logit while training, none in eval mode."""
    torch.manual_seed(5)
    encoder = PartCapsuleEncoder(n_parts=2, n_features=2, template_size=3, n_channels=2)
    x = torch.rand(3_000, 1, 8, 8)
    clean = encoder.eval().capsules(x)
    decoder = ObjectCapsuleDecoder(n_parts=2, n_objects=2, part_features=2, n_features=2)
    votes = decoder.eval()(clean)
    noisy = decoder.train()(clean)
    for noise in (
        _noise(clean.presence, encoder.train().capsules(x).presence),
        _noise(votes["object_presence"], noisy["object_presence"]),
        _noise(votes["part_presence"], noisy["part_presence"]),
    ):
        assert noise.abs().max() <= 2 + 1e-3 and noise.abs().max() > 1.9
        assert abs(noise.mean()) < 0.05 and noise.std().item() == pytest.approx(
            2 / 3**0.5, rel=0.05
        )
    torch.testing.assert_close(decoder.eval()(clean)["votes"], votes["votes"], rtol=0, atol=0)
    # A scale below 1 noises too, within itself; a scale of 0 not at all.
    for scale in (0.5, 0.0):
        encoder.noise_scale = decoder.noise_scale = scale
        parts = _noise(clean.presence, encoder.train().capsules(x).presence)
        presence = decoder.train()(clean)["object_presence"]
        for noise in (parts, _noise(votes["object_presence"], presence)):
            assert noise.abs().max() <= scale + 1e-3 and noise.abs().max() >= 0.9 * scale


def test_object_capsules_vote_through_their_own_mlp(model, images):
    """Each object capsule's MLP (its own weights) maps its features to, per part, an
    object-part pose, a presence logit and a vote scale; a vote is object-viewer composed with
    object-part."""
    decoder = copy.deepcopy(model.object_decoder)
    parts = model.encoder.capsules(images)
    with torch.no_grad():  # non-zero biases, one per object capsule
        decoder.b1.copy_(torch.randn(decoder.b1.shape, generator=torch.Generator().manual_seed(7)))
        decoder.b2.copy_(torch.randn(decoder.b2.shape, generator=torch.Generator().manual_seed(8)))
    out = decoder(parts)
    inputs = torch.cat([parts.pose.flatten(2), parts.presence[..., None], parts.features], -1)
    objects = decoder.set_transformer(inputs).double()
    for b in range(len(images)):
        for k in range(2):
            raw_pose, logit, features = objects[b, k, :6], objects[b, k, 6], objects[b, k, 7:]
            hidden = torch.relu(features @ decoder.w1[k].double() + decoder.b1[k].double())
            per_part = (hidden @ decoder.w2[k].double() + decoder.b2[k].double()).view(3, 8)
            viewer = _homogeneous(pose_matrix(raw_pose))
            for n in range(3):
                vote = (viewer @ _homogeneous(pose_matrix(per_part[n, :6])))[:2]
                _close(out["votes"][b, k, n].double(), vote.flatten())
            _close(out["part_presence"][b, k].double(), torch.sigmoid(per_part[:, 6]))
            scale = nn.functional.softplus(per_part[:, 7]) + 0.01
            _close(out["scale"][b, k].double(), scale)
            _close(out["object_presence"][b, k].double(), torch.sigmoid(logit))


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p + EPS)).sum()


@torch.no_grad()
def _terms_reference(model: StackedCapsuleAutoencoder, x: torch.Tensor) -> dict[str, float]:
    """The objective's four terms image by image (float64)."""
    parts = model.encoder.capsules(x)
    placed = place_templates(model.encoder.templates, parts.pose, model.image_size).double()
    grey = torch.sigmoid(model.intensity(parts.features)).double()[..., 0]  # (B, K)
    presence, background = parts.presence.double(), model.background_logit.double()
    out = model.object_decoder(
        PartCapsules(parts.pose.detach(), parts.presence.detach(), parts.features.detach())
    )
    votes, scale = out["votes"].double(), out["scale"].double()
    mix = out["object_presence"].double()[..., None] * out["part_presence"].double()
    target = parts.pose.flatten(2).double()
    n_images, n_objects = len(x), mix.shape[1]
    image_ll, part_ll, prior, shares = [], [], [], []
    for b in range(n_images):
        pixels = x[b, 0].double()
        std = max(pixels.flatten().std().item(), 0.05)
        # Mixture over the K placed templates and a black background: a template's weight
        # at a pixel is its presence times its value there (+ EPS), the background's exp(logit).
        weights = torch.cat(
            [
                presence[b, :, None, None] * placed[b] + EPS,
                background.exp().view(1, 1, 1).expand(1, *pixels.shape),
            ]
        )
        weights = weights / weights.sum(0)
        means = torch.cat([placed[b] * grey[b, :, None, None], torch.zeros_like(placed[b, :1])])
        density = (weights * Normal(means, std).log_prob(pixels).exp()).sum(0)
        image_ll.append(density.log().sum())
        # Each part's pose: a mixture of the object capsules' votes, weighted by presences.
        joint = torch.log(mix[b] + EPS) - torch.log(mix[b].sum(0) + EPS)  # (K, N)
        joint = joint + Normal(votes[b], scale[b, ..., None]).log_prob(target[b]).sum(-1)
        part_ll.append((presence[b] * torch.logsumexp(joint, dim=0)).sum())
        prior.append(out["object_presence"][b].double() * out["part_presence"][b].double().amax(-1))
        activity = (torch.softmax(joint, dim=0) * presence[b]).sum(-1)  # (K,)
        shares.append(activity / (activity.sum() + EPS))
    prior, shares = torch.stack(prior), torch.stack(shares)  # (B, K)
    c = model.n_classes
    per_image = sum((prior[b].sum() - n_objects / c) ** 2 for b in range(n_images)) / n_images
    per_capsule = sum((prior[:, k].sum() - n_images / c) ** 2 for k in range(n_objects))
    return {
        "image_log_likelihood": float(sum(image_ll) / n_images),
        "part_log_likelihood": float(sum(part_ll) / n_images),
        "prior_sparsity": float(per_image / n_objects + per_capsule / n_objects / n_images),
        "posterior_sparsity": float(
            sum(_entropy(s) for s in shares) / n_images - _entropy(shares.mean(0))
        ),
    }


def _objective(terms: dict[str, float]) -> float:
    """The SCAE's loss from its terms, at the paper's posterior weight of 10."""
    return (
        -terms["image_log_likelihood"]
        - terms["part_log_likelihood"]
        + terms["prior_sparsity"]
        + 10 * terms["posterior_sparsity"]
    )


@pytest.mark.parametrize("classes", [10, 3])
def test_the_objective_term_by_term(model, images, classes):
    with torch.no_grad():
        model.background_logit.fill_(-1.5)  # a background weight of exp(-1.5), not 1
        model.n_classes = classes
        try:
            terms = {k: v.item() for k, v in model.terms(images).items()}
            expected = _terms_reference(model, images)
            loss = model.loss(images).item()
        finally:
            model.background_logit.zero_()
            model.n_classes = 10
    assert terms == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert loss == pytest.approx(_objective(expected), rel=1e-4)


class _FixedVotes(nn.Module):
    """An object decoder whose outputs are fixed tensors: images explained by different
    object capsules, so that the sparsity terms are far from 0."""

    def __init__(self, n_images: int, n_objects: int, n_parts: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(11)

        def draw(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator)

        presence = torch.tensor([[0.95, 0.05], [0.05, 0.95], [0.8, 0.6], [0.3, 0.1]])
        self.out = {
            "votes": draw(n_images, n_objects, n_parts, 6) * 2 - 1,
            "scale": 0.3 + draw(n_images, n_objects, n_parts),
            "object_presence": presence[:n_images, :n_objects],
            "part_presence": 0.1 + 0.8 * draw(n_images, n_objects, n_parts),
        }

    def forward(self, parts: PartCapsules) -> dict[str, torch.Tensor]:  # noqa: ARG002
        return self.out


def test_the_sparsity_terms_with_images_explained_by_different_capsules(model, images):
    scae = copy.deepcopy(model)
    scae.object_decoder = _FixedVotes(len(images), 2, 3)
    with torch.no_grad():
        terms = {k: v.item() for k, v in scae.terms(images).items()}
        loss = scae.loss(images).item()
    expected = _terms_reference(scae, images)
    assert abs(expected["posterior_sparsity"]) > 0.05 and expected["prior_sparsity"] > 0.05
    assert terms == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert loss == pytest.approx(_objective(expected), rel=1e-5)


def test_the_forward_pass_is_the_mixtures_expected_image(model, images):
    """Per pixel, the mixture's mean: each template's grey-level image weighted by presence x
    template value (+ EPS), against a black background weighted exp(background logit)."""
    with torch.no_grad():
        model.background_logit.fill_(0.7)
        try:
            out = model(images)
        finally:
            model.background_logit.zero_()
        parts = model.encoder.capsules(images)
        placed = place_templates(model.encoder.templates, parts.pose, 28).double()
        grey = torch.sigmoid(model.intensity(parts.features)).double()[..., None]
    weights = parts.presence.double()[..., None, None] * placed + EPS
    total = weights.sum(1, keepdim=True) + math.exp(0.7)
    expected = (weights * placed * grey).sum(1, keepdim=True) / total
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-6)


def test_the_papers_settings():
    """24 part and 24 object capsules, 16 special features, 11x11 templates, MNIST's 10
    classes, presence noise 2, posterior sparsity weight 10, gradient clipping at 5; the
    object encoder is a Set Transformer of 3 ISABs, 16 wide, 32 inducing points, 1 head, and
    each object capsule has a 64-unit MLP."""
    torch.manual_seed(6)
    scae = StackedCapsuleAutoencoder(n_channels=2)
    assert (scae.encoder.n_parts, scae.object_decoder.n_objects) == (24, 24)
    assert (scae.encoder.n_features, scae.object_decoder.n_features) == (16, 16)
    assert scae.encoder.template_logits.shape == (24, 11, 11) and scae.image_size == 28
    assert (scae.n_classes, scae.posterior_weight, scae.max_grad_norm) == (10, 10.0, 5.0)
    assert scae.encoder.noise_scale == scae.object_decoder.noise_scale == 2.0
    assert scae.name == "scae" and scae.background_logit.item() == 0.0
    assert scae.intensity.in_features == 16 and scae.intensity.out_features == 1
    st = scae.object_decoder.set_transformer
    assert len(st.blocks) == 3 and st.blocks[0].inducing.shape == (1, 32, 16)
    assert st.blocks[0].mab0.n_heads == 1 and isinstance(st.blocks[0].mab0.ln0, nn.LayerNorm)
    assert st.blocks[0].mab1.q.in_features == 2 * 3 + 1 + 16
    assert st.pool.seeds.shape == (1, 24, 16) and st.out.out_features == 6 + 1 + 16
    assert scae.object_decoder.w1.shape == (24, 16, 64)
    assert scae.object_decoder.w2.shape == (24, 64, 24 * 8)
    assert scae.object_decoder.b1.shape == (24, 64) and scae.object_decoder.b2.shape == (24, 192)
    assert scae.object_decoder.b1.abs().sum() == 0 and scae.object_decoder.b2.abs().sum() == 0
    assert scae.encoder.cnn[2].in_channels == 2
    # The parts' own defaults are the paper's too, 128 channels included.
    encoder, decoder = PartCapsuleEncoder(), ObjectCapsuleDecoder()
    assert (encoder.n_parts, encoder.n_features, encoder.template_logits.shape[-1]) == (24, 16, 11)
    assert encoder.cnn[0].out_channels == 128 and encoder.noise_scale == 2.0
    assert (decoder.n_parts, decoder.n_objects, decoder.n_features) == (24, 24, 16)
    assert decoder.set_transformer.blocks[0].mab1.q.in_features == 2 * 3 + 1 + 16
    assert decoder.w1.shape == (24, 16, 64) and decoder.noise_scale == 2.0
    assert StackedCapsuleAutoencoder().encoder.cnn[2].in_channels == 128
    # Its own settings reach both autoencoders.
    small = StackedCapsuleAutoencoder(n_features=4, noise_scale=0.5, n_channels=2)
    assert small.encoder.noise_scale == small.object_decoder.noise_scale == 0.5
    assert small.encoder.n_features == small.object_decoder.n_features == 4
    two_heads = ObjectCapsuleDecoder(2, 2, 2, 2, dim_hidden=4, n_inducing=2, n_heads=2)
    assert two_heads.set_transformer.pool.mab.n_heads == 2
    # Weights scaled by 1 / sqrt(fan-in): unit-variance inputs keep unit variance.
    assert scae.object_decoder.w1.std().item() == pytest.approx(1 / 4, rel=0.1)
    assert scae.object_decoder.w2.std().item() == pytest.approx(1 / 8, rel=0.1)
    assert scae.encoder.template_logits.std().item() == pytest.approx(1.0, rel=0.1)
