"""The Burgess et al. VAE and its two objectives: beta-VAE and beta-TC-VAE.

The encoder's MEAN is the representation that is explained (``VAE.encoder(x) -> (N, d)``);
the decoder returns Bernoulli logits. Both losses are the batch mean of per-example terms,
the reconstruction being the Bernoulli negative log-likelihood summed over pixels.

References:
    Burgess et al., "Understanding disentangling in beta-VAE", 2018 (architecture).
    Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
    Framework", ICLR 2017. Chen et al., "Isolating Sources of Disentanglement in VAEs",
    NeurIPS 2018 (beta-TC-VAE, minibatch-weighted sampling).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from lfxai.models.autoencoder import TrainableModel

VAE_LOSSES = ("beta_vae", "beta_tc_vae")
SIDES = (32, 64)  # the architecture's input sides: 3 conv layers for 32, 4 for 64
CHANNELS = 32
HIDDEN = 256
KERNEL = 4
_LOG_2PI = math.log(2 * math.pi)


def _n_convs(side: int) -> int:
    return 3 if side == 32 else 4


class BurgessEncoder(nn.Module):
    """The Burgess encoder: conv layers, two 256-unit layers, mean and log-variance heads.

    Conv layers of 32 channels (kernel 4, stride 2). ``forward`` returns the mean ``(N, d)``: what
    is explained.
    """

    def __init__(self, input_shape: tuple[int, int, int], dim_latent: int) -> None:
        super().__init__()
        channels, side, _ = input_shape
        layers: list[nn.Module] = []
        for i in range(_n_convs(side)):
            layers += [nn.Conv2d(channels if i == 0 else CHANNELS, CHANNELS, KERNEL, 2, 1)]
            layers += [nn.ReLU()]
        self.convs = nn.Sequential(*layers, nn.Flatten())
        self.hidden = nn.Sequential(
            nn.Linear(CHANNELS * 4 * 4, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU()
        )
        self.mean = nn.Linear(HIDDEN, dim_latent)
        self.log_var = nn.Linear(HIDDEN, dim_latent)
        self.dim_latent = dim_latent

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance ``(N, d)`` each of the Gaussian posterior q(z|x)."""
        h = self.hidden(self.convs(x))
        return self.mean(h), self.log_var(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder mean ``(N, d)`` of images ``(N, C, S, S)``."""
        return self.mean(self.hidden(self.convs(x)))


class BurgessDecoder(nn.Module):
    """The encoder mirrored: ``(N, d)`` codes to ``(N, C, S, S)`` Bernoulli logits."""

    def __init__(self, input_shape: tuple[int, int, int], dim_latent: int) -> None:
        super().__init__()
        channels, side, _ = input_shape
        self.hidden = nn.Sequential(
            nn.Linear(dim_latent, HIDDEN),
            nn.ReLU(),
            nn.Linear(HIDDEN, HIDDEN),
            nn.ReLU(),
            nn.Linear(HIDDEN, CHANNELS * 4 * 4),
            nn.ReLU(),
            nn.Unflatten(1, (CHANNELS, 4, 4)),
        )
        n = _n_convs(side)
        layers: list[nn.Module] = []
        for i in range(n):
            last = i == n - 1
            out = channels if last else CHANNELS
            layers.append(nn.ConvTranspose2d(CHANNELS, out, KERNEL, 2, 1))
            if not last:
                layers.append(nn.ReLU())
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits ``(N, C, S, S)`` of images decoded from ``z`` ``(N, d)``."""
        return self.deconvs(self.hidden(z))


class _TermRecorder:
    """Sums of the detached loss terms, per mode (train / test), on the model's device.

    Read once per epoch (:meth:`pop`), so training never waits on a per-batch ``.item()``.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, dict[str, torch.Tensor]] = {"train": {}, "test": {}}
        self.counts = {"train": 0, "test": 0}

    def add(self, mode: str, terms: dict[str, torch.Tensor], n: int) -> None:
        sums = self.sums[mode]
        for key, value in terms.items():
            value = value.detach().double() * n
            sums[key] = sums[key] + value if key in sums else value
        self.counts[mode] += n

    def pop(self) -> dict[str, float]:
        """``{"<mode>_<term>": mean}`` since the last pop; then starts afresh."""
        out = {
            f"{mode}_{key}": float(value.item()) / self.counts[mode]
            for mode, sums in self.sums.items()
            for key, value in sums.items()
        }
        self.reset()
        return out


class VAE(TrainableModel):
    """A VAE trained by beta-VAE or beta-TC-VAE (see :func:`burgess_vae`).

    Args:
        encoder, decoder: the Burgess networks.
        loss: one of :data:`VAE_LOSSES`.
        beta: weight of the KL term (beta-VAE) or of the total correlation (beta-TC-VAE).
        dataset_size: training examples, for minibatch-weighted sampling (beta-TC-VAE).
        name: short identifier in file and run names.
    """

    def __init__(
        self,
        encoder: BurgessEncoder,
        decoder: BurgessDecoder,
        loss: str,
        beta: float,
        dataset_size: int,
        name: str = "vae",
    ) -> None:
        super().__init__(name, nn.BCEWithLogitsLoss())
        check_vae_loss(loss)
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if dataset_size < 1:
            raise ValueError(f"dataset_size must be positive, got {dataset_size}")
        self.encoder, self.decoder = encoder, decoder
        self.loss_name, self.beta, self.dataset_size = loss, float(beta), dataset_size
        self.latent_dim = encoder.dim_latent
        self._recorder: _TermRecorder | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of the posterior mean, in [0, 1] (for figures)."""
        return torch.sigmoid(self.decoder(self.encoder(x)))

    def loss_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The objective and its terms on one batch, each a batch mean (one sample of z).

        Returns:
            ``loss``, ``reconstruction`` (Bernoulli NLL summed over pixels), ``kl`` (analytic
            KL(q(z|x) || N(0, I))); beta-TC-VAE adds ``mi``, ``tc`` and ``dw_kl``, whose sum
            is the sampled estimate of the KL (:func:`tc_decomposition`).
        """
        mu, log_var = self.encoder.moments(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        logits = self.decoder(z)
        n = len(x)
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / n
        kl = gaussian_kl(mu, log_var).mean()
        terms = {"reconstruction": reconstruction, "kl": kl}
        if self.loss_name == "beta_vae":
            terms["loss"] = reconstruction + self.beta * kl
        else:
            mi, tc, dw_kl = tc_decomposition(z, mu, log_var, self.dataset_size)
            terms |= {"mi": mi, "tc": tc, "dw_kl": dw_kl}
            terms["loss"] = reconstruction + mi + self.beta * tc + dw_kl
        return terms

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # noqa: ARG002
        """The batch's mean loss of the objective (and its terms recorded, when recording)."""
        terms = self.loss_terms(x)
        if self._recorder is not None:
            self._recorder.add("train" if self.training else "test", terms, len(x))
        return terms["loss"]

    @contextmanager
    def recording_terms(self) -> Iterator[_TermRecorder]:
        """While open, every :meth:`loss` call adds its terms to the yielded recorder.

        Train-mode calls under ``train_``, eval-mode calls under ``test_``.
        """
        self._recorder = _TermRecorder()
        try:
            yield self._recorder
        finally:
            self._recorder = None


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(log_var))) || N(0, I)) per example, ``(N, d) -> (N,)``."""
    return 0.5 * torch.sum(mu.pow(2) + log_var.exp() - 1 - log_var, dim=1)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(z; mu, exp(log_var)) (broadcasting)."""
    return -0.5 * (_LOG_2PI + log_var + (z - mu).pow(2) * torch.exp(-log_var))


def tc_decomposition(
    z: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, dataset_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index-code mutual information, total correlation and dimension-wise KL (batch means).

    With minibatch-weighted sampling (Chen et al. 2018, no stratification):
    ``log q(z_i) ~ logsumexp_k log q(z_i | x_k) - log(B * M)`` and likewise per dimension,
    for a batch of B samples of a data set of M examples. Then ``mi = log q(z|x) - log q(z)``,
    ``tc = log q(z) - sum_j log q(z_j)``, ``dw_kl = sum_j log q(z_j) - log p(z)``: their sum
    telescopes to ``log q(z|x) - log p(z)``, the one-sample estimate of the KL.

    Args:
        z: ``(B, d)`` one sample per example of q(z|x).
        mu: ``(B, d)`` posterior means.
        log_var: ``(B, d)`` posterior log-variances.
        dataset_size: M, the training set size.
    """
    batch = len(z)
    log_q_zx = gaussian_log_density(z, mu, log_var).sum(1)
    log_p_z = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    # (B, B, d): log q(z_i,j | x_k) for every sample i, example k, dimension j.
    matrix = gaussian_log_density(z.unsqueeze(1), mu.unsqueeze(0), log_var.unsqueeze(0))
    log_norm = math.log(batch * dataset_size)
    log_q_z = torch.logsumexp(matrix.sum(2), dim=1) - log_norm
    log_prod_q_zj = (torch.logsumexp(matrix, dim=1) - log_norm).sum(1)
    mi = (log_q_zx - log_q_z).mean()
    tc = (log_q_z - log_prod_q_zj).mean()
    dw_kl = (log_prod_q_zj - log_p_z).mean()
    return mi, tc, dw_kl


def check_vae_loss(loss: str) -> None:
    """Raises ``ValueError`` unless ``loss`` is one of :data:`VAE_LOSSES`."""
    if loss not in VAE_LOSSES:
        raise ValueError(f"unknown VAE loss {loss!r}; valid choices: {list(VAE_LOSSES)}")


def burgess_vae(
    input_shape: tuple[int, int, int],
    dim_latent: int,
    loss: str,
    beta: float,
    dataset_size: int,
    name: str = "vae",
) -> VAE:
    """The Burgess et al. VAE for ``(C, S, S)`` images, S in :data:`SIDES`.

    Args:
        input_shape: one image, e.g. ``(1, 32, 32)`` (3 conv layers) or ``(1, 64, 64)`` (4).
        dim_latent: d, the latent units.
        loss: ``beta_vae`` or ``beta_tc_vae``.
        beta: the loss's beta.
        dataset_size: training examples (beta-TC-VAE's minibatch-weighted sampling).
        name: short identifier.

    Raises:
        ValueError: a shape or loss the model does not take (the message names the choices).
    """
    shape = tuple(input_shape)
    if len(shape) != 3 or shape[1] != shape[2] or shape[1] not in SIDES:
        raise ValueError(
            f"burgess_vae takes square images (C, S, S) with S in {list(SIDES)}, got {shape}"
        )
    check_vae_loss(loss)
    if dim_latent < 1:
        raise ValueError(f"dim_latent must be positive, got {dim_latent}")
    return VAE(
        BurgessEncoder(shape, dim_latent),
        BurgessDecoder(shape, dim_latent),
        loss,
        beta,
        dataset_size,
        name=name,
    )
