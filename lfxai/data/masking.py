"""Masks that remove the most important features of each example, built for a whole batch.

Used by the consistency checks (perturb the top-k% features, measure the representation
shift) and by ROAR (retrain on images whose top-k% pixels are removed).
"""

from __future__ import annotations

import torch


def top_k_mask(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """Boolean mask of the ``fraction`` highest-scoring features of every example.

    One ``topk`` over the flattened features and one ``scatter``: no loop over examples or
    features. Exactly ``round(fraction * n_features)`` entries are set per example (ties are
    broken by ``topk``).

    Args:
        scores: importance ``(N, *feature_shape)``.
        fraction: share of features to select, in ``[0, 1]``.

    Returns:
        ``(N, *feature_shape)`` boolean tensor, True where a feature is selected.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    flat = scores.reshape(len(scores), -1)
    k = int(round(fraction * flat.shape[1]))
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if k > 0:
        top = torch.topk(flat, k, dim=1).indices
        mask.scatter_(1, top, True)
    return mask.view_as(scores)


def apply_mask(
    inputs: torch.Tensor, mask: torch.Tensor, replacement: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """Replaces the masked features of ``inputs`` by ``replacement`` (a value or a tensor).

    Args:
        inputs: ``(N, *feature_shape)``.
        mask: boolean, broadcastable to ``inputs`` (e.g. one mask for all colour channels).
        replacement: scalar, or a tensor broadcastable to ``inputs`` (a blurred image, the
            mean training sequence, ...).

    Returns:
        A new tensor; ``inputs`` is not modified.
    """
    if not isinstance(replacement, torch.Tensor):
        replacement = torch.tensor(replacement, dtype=inputs.dtype, device=inputs.device)
    return torch.where(mask, replacement.to(inputs.device, inputs.dtype), inputs)


class GaussianBlur(torch.nn.Module):
    """Blurs images ``(N, C, H, W)`` with a separable Gaussian kernel, batched.

    A baseline for masking: masked pixels take the value of the blurred image. Borders are
    reflected, as torchvision's ``gaussian_blur`` does; the kernel is built on the inputs'
    device and dtype, so the module needs no moving.

    Args:
        kernel_size: odd side of the kernel (smaller than twice each image side).
        sigma: standard deviation of the Gaussian, in pixels.
    """

    def __init__(self, kernel_size: int = 21, sigma: float = 5.0) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.kernel_size, self.sigma = kernel_size, sigma

    def kernel(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The normalised 1-D kernel ``(kernel_size,)``."""
        half = self.kernel_size // 2
        offsets = torch.arange(-half, half + 1, device=device, dtype=dtype)
        weights = torch.exp(-0.5 * (offsets / self.sigma) ** 2)
        return weights / weights.sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Blurred images ``(N, C, H, W)``, edges padded by reflection."""
        n, c, h, w = x.shape
        pad = self.kernel_size // 2
        k = self.kernel(x.device, x.dtype)
        # Each channel blurred alone (groups=c): rows, then columns.
        out = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
        out = torch.nn.functional.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        return torch.nn.functional.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)

    def extra_repr(self) -> str:
        """The kernel's size and sigma, in the module's repr."""
        return f"kernel_size={self.kernel_size}, sigma={self.sigma}"
