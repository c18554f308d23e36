"""Stacked Capsule Autoencoder (SCAE) for 28x28 MNIST: the fifth pretext model.

Two autoencoders stacked. The part capsule autoencoder (PCAE) finds ``K`` part capsules in an
image (pose, presence, special features) and explains the image as a Gaussian mixture of
learned templates placed by those poses. The object capsule autoencoder (OCAE) explains the
set of part poses by object capsules: a Set Transformer turns the parts into object capsules,
each of which votes for every part's pose (object-viewer times object-part transform); the
part likelihood is the Gaussian mixture of the votes. Sparsity losses make few object
capsules explain each image and every capsule explain some images. Everything is batched
over examples, capsules and pixels.

The representation that is explained (``model.encoder``) is the part capsules' output, per
capsule ``[presence (1), pose (6), template (11x11), special features (16)]`` = 144 values,
flattened to ``(N, 24 * 144)``.

References:
    Kosiorek, Sabour, Teh & Hinton, "Stacked Capsule Autoencoders", NeurIPS 2019.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lfxai.models.autoencoder import TrainableModel
from lfxai.models.set_transformer import SetTransformer

N_POSE = 6  # a 2x3 affine matrix
EPS = 1e-8


def rmsprop_eps(batch_size: int) -> float:
    """The paper's RMSprop epsilon for a batch size B: ``1 / (10 B)^2``."""
    return 1.0 / (10 * batch_size) ** 2


def pose_matrix(raw: torch.Tensor) -> torch.Tensor:
    """Affine transforms ``(..., 2, 3)`` from 6 unconstrained values ``(..., 6)``.

    Scales ``0.05 + sigmoid`` (a fraction of the image), a rotation angle, a shear
    ``tanh`` and a translation ``tanh`` (normalised image coordinates in [-1, 1]):
    ``[R(angle) @ [[sx, shear], [0, sy]] | t]``, which maps template coordinates to image ones.
    """
    sx, sy = 0.05 + torch.sigmoid(raw[..., 0]), 0.05 + torch.sigmoid(raw[..., 1])
    angle, shear = raw[..., 2], torch.tanh(raw[..., 3])
    tx, ty = torch.tanh(raw[..., 4]), torch.tanh(raw[..., 5])
    cos, sin = torch.cos(angle), torch.sin(angle)
    row0 = torch.stack([cos * sx, cos * shear - sin * sy, tx], dim=-1)
    row1 = torch.stack([sin * sx, sin * shear + cos * sy, ty], dim=-1)
    return torch.stack([row0, row1], dim=-2)


def compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """``outer @ inner`` of affine maps given as ``(..., 2, 3)`` matrices."""
    linear = outer[..., :2] @ inner[..., :2]
    shift = outer[..., :2] @ inner[..., 2:] + outer[..., 2:]
    return torch.cat([linear, shift], dim=-1)


def place_templates(templates: torch.Tensor, pose: torch.Tensor, size: int) -> torch.Tensor:
    """Renders each template where its pose puts it in a ``size x size`` image.

    Args:
        templates: ``(K, h, w)`` template images.
        pose: ``(B, K, 2, 3)`` template-to-image affine maps in normalised coordinates
            (the identity stretches a template over the whole image).
        size: side of the output image.

    Returns:
        ``(B, K, size, size)``; pixels outside a template are 0.
    """
    b, k = pose.shape[:2]
    linear, shift = pose[..., :2], pose[..., 2:]
    a, bb, c, d = linear[..., 0, 0], linear[..., 0, 1], linear[..., 1, 0], linear[..., 1, 1]
    det = a * d - bb * c
    inverse = torch.stack([torch.stack([d, -bb], -1), torch.stack([-c, a], -1)], -2)
    inverse = inverse / det[..., None, None]
    # grid_sample wants the image-to-template map: u -> inverse @ (u - shift).
    theta = torch.cat([inverse, -inverse @ shift], dim=-1).reshape(b * k, 2, 3)
    grid = F.affine_grid(theta, [b * k, 1, size, size], align_corners=True)
    source = templates.unsqueeze(0).expand(b, -1, -1, -1).reshape(b * k, 1, *templates.shape[1:])
    placed = F.grid_sample(source, grid, align_corners=True, padding_mode="zeros")
    return placed.view(b, k, size, size)


@dataclass
class PartCapsules:
    """The part capsules of a batch: poses, presences and features.

    ``pose (B, K, 2, 3)``, ``presence (B, K)`` in [0, 1], ``features (B, K, F)``.
    """

    pose: torch.Tensor
    presence: torch.Tensor
    features: torch.Tensor


class PartCapsuleEncoder(nn.Module):
    """Images ``(B, 1, 28, 28)`` to part capsules, attention-pooled over space.

    Four 3x3 convolutions of ``n_channels`` (strides 2, 2, 1, 1, ReLU), then a 1x1 convolution
    to ``K x (6 + 1 + F + 1)`` maps; the last map of each capsule is its attention logit over
    positions, which pools the other maps into the capsule's pose, presence logit and special
    features. The templates live here too: they are part of the explained representation.

    Args:
        n_parts: part capsules K.
        n_features: special features F per capsule.
        template_size: side of the learned templates.
        n_channels: channels of the convolutions.
        noise_scale: presence logits get uniform noise in ``[-noise_scale, noise_scale]``
            while training (never in eval mode).
    """

    def __init__(
        self,
        n_parts: int = 24,
        n_features: int = 16,
        template_size: int = 11,
        n_channels: int = 128,
        noise_scale: float = 2.0,
    ) -> None:
        super().__init__()
        self.n_parts, self.n_features, self.noise_scale = n_parts, n_features, noise_scale
        layers: list[nn.Module] = []
        for i, stride in enumerate((2, 2, 1, 1)):
            layers += [nn.Conv2d(1 if i == 0 else n_channels, n_channels, 3, stride, 1), nn.ReLU()]
        self.cnn = nn.Sequential(*layers)
        self.n_maps = N_POSE + 1 + n_features + 1
        self.head = nn.Conv2d(n_channels, n_parts * self.n_maps, 1)
        self.template_logits = nn.Parameter(torch.randn(n_parts, template_size, template_size))
        self.capsule_size = 1 + N_POSE + template_size**2 + n_features  # 144 by default

    @property
    def templates(self) -> torch.Tensor:
        """``(K, h, w)`` template images in [0, 1]."""
        return torch.sigmoid(self.template_logits)

    def capsules(self, x: torch.Tensor) -> PartCapsules:
        """The part capsules of images ``(N, 1, S, S)``: poses, presences, features."""
        maps = self.head(self.cnn(x))
        # x.shape[0], not len(x): torch.export keeps the batch size symbolic only through
        # the shape (len() becomes a constant), and the logged encoder takes any batch size.
        maps = maps.view(x.shape[0], self.n_parts, self.n_maps, -1)  # (B, K, maps, positions)
        attention = torch.softmax(maps[:, :, -1], dim=-1)
        pooled = (maps[:, :, :-1] * attention.unsqueeze(2)).sum(-1)  # (B, K, maps - 1)
        raw_pose, logit, features = pooled.split([N_POSE, 1, self.n_features], dim=-1)
        logit = logit.squeeze(-1)
        if self.training and self.noise_scale > 0:
            logit = logit + (torch.rand_like(logit) * 2 - 1) * self.noise_scale
        return PartCapsules(pose_matrix(raw_pose), torch.sigmoid(logit), features)

    def represent(self, caps: PartCapsules) -> torch.Tensor:
        """``(B, K * capsule_size)``: presence, pose, template and features of each capsule."""
        b = caps.presence.shape[0]  # symbolic under torch.export (see capsules)
        templates = self.templates.flatten(1).unsqueeze(0).expand(b, -1, -1)
        parts = [caps.presence.unsqueeze(-1), caps.pose.flatten(2), templates, caps.features]
        return torch.cat(parts, dim=-1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The explained representation: ``(N, 24 * 144)`` flattened part capsules."""
        return self.represent(self.capsules(x))


class ObjectCapsuleDecoder(nn.Module):
    """Part capsules to object capsules, and each object capsule's votes for every part.

    A Set Transformer (``n_layers`` ISABs, hidden 16, 32 inducing points, 1 head, layer norm)
    over the parts' ``[pose, presence, features]`` gives ``n_objects`` capsules, each an
    object-viewer pose, a presence logit and special features; one MLP per object capsule
    (batched) predicts, for every part, its object-part pose, presence logit and vote scale.

    Args:
        n_parts: part capsules N.
        n_objects: object capsules K.
        part_features: special features of a part capsule.
        n_features: special features of an object capsule.
        n_layers, dim_hidden, n_inducing, n_heads: the Set Transformer's.
        mlp_hidden: hidden units of the per-capsule MLPs.
        noise_scale: uniform noise on the presence logits while training.
    """

    def __init__(
        self,
        n_parts: int = 24,
        n_objects: int = 24,
        part_features: int = 16,
        n_features: int = 16,
        n_layers: int = 3,
        dim_hidden: int = 16,
        n_inducing: int = 32,
        n_heads: int = 1,
        mlp_hidden: int = 64,
        noise_scale: float = 2.0,
    ) -> None:
        super().__init__()
        self.n_parts, self.n_objects, self.noise_scale = n_parts, n_objects, noise_scale
        dim_in = 2 * 3 + 1 + part_features
        self.set_transformer = SetTransformer(
            dim_in, n_objects, N_POSE + 1 + n_features, n_layers, dim_hidden, n_inducing, n_heads
        )
        self.n_features = n_features
        per_part = N_POSE + 2  # object-part pose, presence logit, vote scale
        self.w1 = nn.Parameter(
            torch.randn(n_objects, n_features, mlp_hidden) / math.sqrt(n_features)
        )
        self.b1 = nn.Parameter(torch.zeros(n_objects, mlp_hidden))
        self.w2 = nn.Parameter(
            torch.randn(n_objects, mlp_hidden, n_parts * per_part) / math.sqrt(mlp_hidden)
        )
        self.b2 = nn.Parameter(torch.zeros(n_objects, n_parts * per_part))

    def _noisy(self, logit: torch.Tensor) -> torch.Tensor:
        if self.training and self.noise_scale > 0:
            logit = logit + (torch.rand_like(logit) * 2 - 1) * self.noise_scale
        return logit

    def forward(self, parts: PartCapsules) -> dict[str, torch.Tensor]:
        """The object capsules' votes for the parts and their predicted part presences.

        Votes ``(B, K, N, 6)``, vote scales ``(B, K, N)``, object presence ``(B, K)`` and predicted
        part presence ``(B, K, N)``.
        """
        inputs = torch.cat(
            [parts.pose.flatten(2), parts.presence.unsqueeze(-1), parts.features], dim=-1
        )
        objects = self.set_transformer(inputs)  # (B, K, 6 + 1 + F)
        raw_pose, logit, features = objects.split([N_POSE, 1, self.n_features], dim=-1)
        object_presence = torch.sigmoid(self._noisy(logit.squeeze(-1)))
        hidden = torch.relu(torch.einsum("bkf,kfh->bkh", features, self.w1) + self.b1)
        out = torch.einsum("bkh,kho->bko", hidden, self.w2) + self.b2
        out = out.view(*out.shape[:2], self.n_parts, N_POSE + 2)
        object_part = pose_matrix(out[..., :N_POSE])  # (B, K, N, 2, 3)
        object_viewer = pose_matrix(raw_pose).unsqueeze(2)  # (B, K, 1, 2, 3)
        votes = compose(object_viewer.expand_as(object_part), object_part).flatten(-2)
        return {
            "votes": votes,
            "scale": F.softplus(out[..., N_POSE + 1]) + 1e-2,
            "object_presence": object_presence,
            "part_presence": torch.sigmoid(self._noisy(out[..., N_POSE])),
        }


def _entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return -(p * torch.log(p + EPS)).sum(dim)


class StackedCapsuleAutoencoder(TrainableModel):
    """The SCAE: part capsule autoencoder plus object capsule autoencoder, one objective.

    ``loss(x)`` = -(image log-likelihood) - (part log-likelihood) + prior sparsity
    + ``posterior_weight`` x posterior sparsity, the first two averaged over the batch. The
    sparsity terms are batch-level (they compare capsule activity across the batch), so the
    loss of a batch is not the mean of its examples' losses; an explainer's per-example
    loss is the objective of a batch of one. The object capsule autoencoder sees the part
    capsules without gradient (as in the paper), so the part likelihood trains only the
    object decoder and the image likelihood only the part encoder and templates.

    Args:
        n_parts: part capsules (24).
        n_objects: object capsules (24).
        n_classes: C in the prior sparsity targets K/C and B/C.
        template_size: side of the templates (11).
        image_size: side of the images (28).
        n_features: special features of part and object capsules (16).
        noise_scale: uniform presence-logit noise while training (2).
        posterior_weight: weight of the posterior sparsity loss (10).
        batch_size: the training batch size; RMSprop's eps is ``1 / (10 B)^2`` as in the paper.
        name: short identifier.
        n_channels: channels of the part encoder's convolutions (128).

    Attributes:
        max_grad_norm: the training loop clips gradients to this norm (5).
        optimizer_options: extra keyword arguments of the optimiser (``eps``).
        latent_dim: size of the explained representation (``n_parts * 144``).
    """

    target = "input"

    def __init__(
        self,
        n_parts: int = 24,
        n_objects: int = 24,
        n_classes: int = 10,
        template_size: int = 11,
        image_size: int = 28,
        n_features: int = 16,
        noise_scale: float = 2.0,
        posterior_weight: float = 10.0,
        batch_size: int = 128,
        name: str = "scae",
        n_channels: int = 128,
    ) -> None:
        super().__init__(name)
        self.encoder = PartCapsuleEncoder(
            n_parts, n_features, template_size, n_channels, noise_scale=noise_scale
        )
        self.object_decoder = ObjectCapsuleDecoder(
            n_parts, n_objects, n_features, n_features, noise_scale=noise_scale
        )
        self.intensity = nn.Linear(n_features, 1)  # each part's grey level, from its features
        self.background_logit = nn.Parameter(torch.zeros(()))
        self.image_size, self.n_classes, self.posterior_weight = (
            image_size,
            n_classes,
            posterior_weight,
        )
        self.latent_dim = n_parts * self.encoder.capsule_size
        self.max_grad_norm = 5.0
        self.optimizer_options = {"eps": rmsprop_eps(batch_size)}

    def _image_mixture(self, parts: PartCapsules) -> tuple[torch.Tensor, torch.Tensor]:
        """Component means ``(B, K + 1, H, W)`` and log mixing weights (background last)."""
        placed = place_templates(self.encoder.templates, parts.pose, self.image_size)
        grey = torch.sigmoid(self.intensity(parts.features)).unsqueeze(-1)  # (B, K, 1, 1)
        means = torch.cat([placed * grey, torch.zeros_like(placed[:, :1])], dim=1)
        logits = torch.log(parts.presence[..., None, None] * placed + EPS)
        background = self.background_logit.expand_as(logits[:, :1])
        return means, torch.log_softmax(torch.cat([logits, background], dim=1), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The expected image under the part capsules' mixture, ``(B, 1, H, W)``."""
        means, log_mix = self._image_mixture(self.encoder.capsules(x))
        return (log_mix.exp() * means).sum(1, keepdim=True)

    def terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The four terms of the objective (log-likelihoods averaged over the batch)."""
        parts = self.encoder.capsules(x)
        means, log_mix = self._image_mixture(parts)
        # The likelihood's std comes from the image itself (its pixels' spread), as a constant.
        std = x.detach().flatten(1).std(dim=1).clamp_min(0.05).view(-1, 1, 1, 1)
        pixel = -0.5 * ((x - means) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)
        image_ll = torch.logsumexp(log_mix + pixel, dim=1).flatten(1).sum(1)

        observed = PartCapsules(
            parts.pose.detach(), parts.presence.detach(), parts.features.detach()
        )
        out = self.object_decoder(observed)
        target = observed.pose.flatten(2).unsqueeze(1)  # (B, 1, N, 6)
        scale = out["scale"].unsqueeze(-1)
        vote_ll = (
            -0.5 * ((target - out["votes"]) / scale) ** 2
            - torch.log(scale)
            - 0.5 * math.log(2 * math.pi)
        ).sum(-1)  # (B, K, N)
        mix = out["object_presence"].unsqueeze(-1) * out["part_presence"]  # (B, K, N)
        log_mix_parts = torch.log(mix + EPS) - torch.log(mix.sum(1, keepdim=True) + EPS)
        joint = log_mix_parts + vote_ll
        part_ll = (observed.presence * torch.logsumexp(joint, dim=1)).sum(1)

        n_objects = mix.shape[1]
        # Prior: each image uses K/C object capsules, each capsule is used by B/C images.
        prior = out["object_presence"] * out["part_presence"].amax(-1)  # (B, K)
        per_image = ((prior.sum(1) - n_objects / self.n_classes) ** 2).mean() / n_objects
        per_capsule = ((prior.sum(0) - len(x) / self.n_classes) ** 2).mean() / len(x)
        # Posterior: object capsules' share of the parts of an image (responsibilities).
        activity = (torch.softmax(joint, dim=1) * observed.presence.unsqueeze(1)).sum(-1)
        share = activity / (activity.sum(1, keepdim=True) + EPS)  # (B, K)
        posterior = _entropy(share).mean() - _entropy(share.mean(0))
        return {
            "image_log_likelihood": image_ll.mean(),
            "part_log_likelihood": part_ll.mean(),
            "prior_sparsity": per_image + per_capsule,
            "posterior_sparsity": posterior,
        }

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The unsupervised SCAE objective of a batch (labels ignored)."""
        t = self.terms(x)
        return (
            -t["image_log_likelihood"]
            - t["part_log_likelihood"]
            + t["prior_sparsity"]
            + self.posterior_weight * t["posterior_sparsity"]
        )
