"""SimCLR with a ResNet-18 backbone for 32x32 images; its encoder's 512 features are explained.

The backbone is torchvision's ResNet-18 adapted to CIFAR-sized inputs (a 3x3 stride-1 stem and
no max-pool, so the last stage still sees 4x4 maps), the projection head an MLP to 128
dimensions, the loss NT-Xent over two augmented views of each image.

Augmentations are drawn per image but computed for the whole batch at once, on the batch's
device: torchvision's v2 transforms, given a batched tensor, draw ONE set of parameters for
the whole batch, so the crop, flip, colour jitter and grayscale are written here as batched
tensor operations with per-image parameters.

References:
    Chen, Kornblith, Norouzi & Hinton. A Simple Framework for Contrastive Learning of Visual
    Representations. ICML 2020.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lfxai.models.autoencoder import TrainableModel

FEATURE_DIM = 512  # ResNet-18's last stage: the encoder's output, what is explained
PROJECTION_DIM = 128
TEMPERATURE = 0.5
# Per-channel statistics of CIFAR-10's training images (inputs stay in [0, 1]; the encoder
# normalises, so explanations, masks and figures all work on plain images).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
EVAL_AUGMENT_SEED = 12345  # fixed views in eval mode: comparable test losses across epochs


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images normalised by the data set's per-channel mean and std."""
        return (x - self.mean) / self.std


def resnet18_backbone() -> nn.Module:
    """ResNet-18 for 32x32 inputs: 3x3 stride-1 stem, no max-pool, no classifier.

    Returns:
        A module mapping ``(N, 3, 32, 32)`` to ``(N, 512)``.
    """
    from torchvision.models import resnet18  # local import: torchvision is slow to import

    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net


class SimCLREncoder(nn.Module):
    """Normalisation and the ResNet-18 backbone: ``(N, 3, 32, 32)`` in [0, 1] -> ``(N, 512)``."""

    def __init__(self) -> None:
        super().__init__()
        self.normalize = Normalize(CIFAR10_MEAN, CIFAR10_STD)
        self.backbone = resnet18_backbone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The ResNet's features ``(N, 512)`` of images ``(N, 3, 32, 32)``."""
        return self.backbone(self.normalize(x))


def _uniform(n: int, low: float, high: float, like: torch.Tensor, generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, device=like.device, generator=generator)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma ``(N, 1, H, W)`` of RGB images (PIL's weights; torchvision: 0.2989 red)."""
    r, g, b = x.unbind(dim=1)
    return (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """RGB ``(N, 3, H, W)`` in [0, 1] to HSV, each channel in [0, 1]."""
    r, g, b = x.unbind(dim=1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(
        maxc == r,
        ((g - b) / safe) % 6,
        torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    hue = torch.where(delta > 0, hue / 6, torch.zeros_like(hue))
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), 0)
    return torch.stack([hue, sat, maxc], dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """HSV ``(N, 3, H, W)`` (channels in [0, 1]) to RGB in [0, 1]."""
    h, s, v = x.unbind(dim=1)
    # f(n) = v - v s max(0, min(k, 4 - k, 1)), k = (n + 6h) mod 6, n = 5, 3, 1 for R, G, B.
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = (n + 6 * h.unsqueeze(1)) % 6
    ramp = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return v.unsqueeze(1) - v.unsqueeze(1) * s.unsqueeze(1) * ramp


class BatchAugment(nn.Module):
    """SimCLR's CIFAR augmentations with independent random parameters for every image.

    In order: random resized crop (area ``crop_scale``, aspect ratio ``crop_ratio`` drawn
    log-uniformly, bilinear, back to the input size) with a horizontal flip (p = 0.5), colour
    jitter with probability ``p_jitter`` (brightness, contrast, saturation ``jitter``, hue
    ``hue``; applied in this fixed order, where torchvision shuffles it), grayscale with
    probability ``p_gray``. Where torchvision redraws a crop that falls outside the image, its
    sides are clipped to the image instead.

    Args:
        crop_scale: range of the crop's share of the image area.
        crop_ratio: range of the crop's width / height.
        jitter: strength of brightness, contrast and saturation jitter.
        hue: largest hue shift (a fraction of the colour circle).
        p_jitter: probability of the colour jitter.
        p_gray: probability of the grayscale conversion.
    """

    def __init__(
        self,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        jitter: float = 0.4,
        hue: float = 0.1,
        p_jitter: float = 0.8,
        p_gray: float = 0.2,
    ) -> None:
        super().__init__()
        self.crop_scale, self.crop_ratio = crop_scale, crop_ratio
        self.jitter, self.hue = jitter, hue
        self.p_jitter, self.p_gray = p_jitter, p_gray

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augmented copies ``(N, 3, H, W)`` of ``x`` (in [0, 1]); ``generator`` on x's device."""
        x = self.crop_flip(x, generator)
        n = len(x)
        jitter = (torch.rand(n, device=x.device, generator=generator) < self.p_jitter).view(
            -1, 1, 1, 1
        )
        x = torch.where(jitter, self.color_jitter(x, generator), x)
        gray = (torch.rand(n, device=x.device, generator=generator) < self.p_gray).view(-1, 1, 1, 1)
        return torch.where(gray, _gray(x).expand_as(x), x)

    def crop_flip(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """One affine resampling per image: a random crop, resized back, flipped at random."""
        n = len(x)
        area = _uniform(n, *self.crop_scale, x, generator)
        log_ratio = _uniform(n, *map(math.log, self.crop_ratio), x, generator)
        ratio = torch.exp(log_ratio)
        # Half-widths in normalised coordinates ([-1, 1] spans the image): sides as fractions.
        width = torch.sqrt(area * ratio).clamp(max=1.0)
        height = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (1 - width) * _uniform(n, -1.0, 1.0, x, generator)
        cy = (1 - height) * _uniform(n, -1.0, 1.0, x, generator)
        flip = torch.where(torch.rand(n, device=x.device, generator=generator) < 0.5, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 0, 2] = width * flip, cx
        theta[:, 1, 1], theta[:, 1, 2] = height, cy
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def color_jitter(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Brightness, contrast, saturation and hue, each factor drawn per image."""
        n, low, high = len(x), 1 - self.jitter, 1 + self.jitter

        def factor() -> torch.Tensor:
            return _uniform(n, low, high, x, generator).view(-1, 1, 1, 1)

        x = (x * factor()).clamp(0, 1)
        mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * factor() + mean).clamp(0, 1)
        gray = _gray(x)
        x = ((x - gray) * factor() + gray).clamp(0, 1)
        hsv = rgb_to_hsv(x)
        shift = _uniform(n, -self.hue, self.hue, x, generator).view(-1, 1, 1)
        hsv = torch.stack([(hsv[:, 0] + shift) % 1.0, hsv[:, 1], hsv[:, 2]], dim=1)
        return hsv_to_rgb(hsv).clamp(0, 1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """NT-Xent: cross-entropy of each view against its partner among the other 2N - 1 views.

    Args:
        z1: projections ``(N, d)`` of the first views.
        z2: projections ``(N, d)`` of the second views (row i pairs with ``z1[i]``).
        temperature: divides the cosine similarities.

    Returns:
        The mean loss over the 2N views (float32 whatever the inputs' dtype).
    """
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = len(z1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))  # a view is never its own candidate
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, partner)


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA GPUs that support it (no loss scaling needed), else None (full precision).

    fp16 would need a gradient scaler in the training loop, which the loop has not: rather
    than risk underflowing gradients, such GPUs train in float32.
    """
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


class SimCLR(TrainableModel):
    """Encoder, projection head and NT-Xent on two augmented views per image.

    ``forward`` (and ``encoder``) give the 512 backbone features; ``loss(x, y)`` is the
    training objective (labels unused). In eval mode the views are drawn from a fixed seed,
    so the test loss of successive epochs compares the same views. On CUDA the forward passes
    of the loss run under bf16 autocast where the GPU supports it; the CPU path is float32.

    Args:
        name: a short identifier used in file and run names.
        temperature: NT-Xent temperature.
        augment: the view generator (default :class:`BatchAugment`).
    """

    def __init__(
        self,
        name: str = "simclr",
        temperature: float = TEMPERATURE,
        augment: nn.Module | None = None,
    ) -> None:
        super().__init__(name)
        self.encoder = SimCLREncoder()
        self.projector = nn.Sequential(
            nn.Linear(FEATURE_DIM, FEATURE_DIM),
            nn.ReLU(inplace=True),
            nn.Linear(FEATURE_DIM, PROJECTION_DIM),
        )
        self.augment = augment if augment is not None else BatchAugment()
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's features ``(N, 512)`` (the representation that is explained)."""
        return self.encoder(x)

    def views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two augmented views of every image (fixed ones in eval mode)."""
        generator = None
        if not self.training:
            generator = torch.Generator(device=x.device).manual_seed(EVAL_AUGMENT_SEED)
        with torch.no_grad():
            return self.augment(x, generator), self.augment(x, generator)

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """NT-Xent of the projections of two views of each image (``y`` is ignored)."""
        v1, v2 = self.views(x)
        dtype = _autocast_dtype(x.device)
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
            # One pass over both views: BatchNorm sees all 2N views, as in SimCLR.
            z = self.projector(self.encoder(torch.cat([v1, v2])))
        z1, z2 = z.float().chunk(2)
        return nt_xent(z1, z2, self.temperature)
