"""The Burgess VAE: shapes, bad input, and both losses against direct computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from lfxai.models.vae import (
    VAE,
    VAE_LOSSES,
    BurgessEncoder,
    burgess_vae,
    gaussian_kl,
    tc_decomposition,
)


def _convs(encoder: BurgessEncoder) -> list[nn.Conv2d]:
    return [m for m in encoder.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize(("side", "n_convs"), [(32, 3), (64, 4)])
def test_architecture_and_shapes(side, n_convs):
    torch.manual_seed(0)
    model = burgess_vae((1, side, side), 3, "beta_vae", 1.0, 100).eval()
    convs = _convs(model.encoder)
    assert len(convs) == n_convs
    assert all(c.out_channels == 32 and c.kernel_size == (4, 4) for c in convs)
    assert all(c.stride == (2, 2) for c in convs)
    linears = [m for m in model.encoder.hidden if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 256), (256, 256)]
    deconvs = [m for m in model.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(deconvs) == n_convs
    x = torch.rand(5, 1, side, side)
    mu, log_var = model.encoder.moments(x)
    assert mu.shape == log_var.shape == (5, 3)
    assert torch.equal(model.encoder(x), mu)  # the explained representation is the mean
    assert model.decoder(mu).shape == x.shape
    out = model(x)
    assert out.shape == x.shape and bool(((out >= 0) & (out <= 1)).all())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": (1, 28, 28)}, r"S in \[32, 64\], got \(1, 28, 28\)"),
        ({"input_shape": (32, 32)}, r"square images \(C, S, S\)"),
        ({"loss": "vae"}, r"unknown VAE loss 'vae'; valid choices: \['beta_vae', 'beta_tc_vae'\]"),
        ({"beta": -1.0}, r"beta must be >= 0, got -1"),
        ({"dataset_size": 0}, r"dataset_size must be positive"),
    ],
)
def test_bad_input_names_the_value_and_the_choices(kwargs, message):
    args = {"input_shape": (1, 32, 32), "dim_latent": 3, "loss": "beta_vae", "beta": 1.0}
    args |= {"dataset_size": 10} | kwargs
    with pytest.raises(ValueError, match=message):
        burgess_vae(**args)


def test_kl_of_known_gaussians():
    assert torch.equal(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))
    # KL(N(1, 4) || N(0, 1)) = (4 + 1 - 1 - log 4) / 2; KL(N(0, 1) || N(0, 1)) = 0.
    mu = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    log_var = torch.tensor([[math.log(4.0), 0.0]], dtype=torch.float64)
    assert gaussian_kl(mu, log_var).item() == pytest.approx((4 - math.log(4)) / 2, rel=1e-12)
    generator = torch.Generator().manual_seed(0)
    mu = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    log_var = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    expected = kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(gaussian_kl(mu, log_var), expected, rtol=1e-12, atol=1e-12)


def _direct_tc(z, mu, log_var, dataset_size):
    """Minibatch-weighted sampling written as loops over samples, examples and units."""
    batch, d = z.shape
    std = (0.5 * log_var).exp()

    def log_q(i, k, j):  # log q(z_ij | x_k)
        return Normal(mu[k, j], std[k, j]).log_prob(z[i, j])

    mi = tc = dw = 0.0
    for i in range(batch):
        joint = [sum(log_q(i, k, j) for j in range(d)) for k in range(batch)]
        log_qz = torch.logsumexp(torch.stack(joint), 0) - math.log(batch * dataset_size)
        marginals = [
            torch.logsumexp(torch.stack([log_q(i, k, j) for k in range(batch)]), 0)
            - math.log(batch * dataset_size)
            for j in range(d)
        ]
        log_prod = sum(marginals)
        log_qzx = sum(log_q(i, i, j) for j in range(d))
        log_pz = Normal(0.0, 1.0).log_prob(z[i]).sum()
        mi += (log_qzx - log_qz) / batch
        tc += (log_qz - log_prod) / batch
        dw += (log_prod - log_pz) / batch
    return mi, tc, dw


def test_tc_decomposition_against_a_direct_computation_and_its_sum_is_the_kl_estimate():
    generator = torch.Generator().manual_seed(1)
    mu = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    log_var = torch.randn(5, 3, generator=generator, dtype=torch.float64) * 0.5
    z = mu + torch.randn(5, 3, generator=generator, dtype=torch.float64) * (0.5 * log_var).exp()
    mi, tc, dw_kl = tc_decomposition(z, mu, log_var, dataset_size=1000)
    for got, want in zip((mi, tc, dw_kl), _direct_tc(z, mu, log_var, 1000), strict=True):
        assert got.item() == pytest.approx(want.item(), rel=1e-10, abs=1e-10)
    # The three terms telescope to log q(z|x) - log p(z), the one-sample KL estimate.
    log_qzx = Normal(mu, (0.5 * log_var).exp()).log_prob(z).sum(1)
    log_pz = Normal(0.0, 1.0).log_prob(z).sum(1)
    total = (mi + tc + dw_kl).item()
    assert total == pytest.approx((log_qzx - log_pz).mean().item(), rel=1e-10, abs=1e-10)


def _model(loss: str, beta: float = 4.0) -> torch.nn.Module:
    torch.manual_seed(0)
    return burgess_vae((1, 32, 32), 3, loss, beta, dataset_size=600).double().eval()


def _sampled(model, x, seed):
    """The posterior sample and logits the loss draws after ``torch.manual_seed(seed)``."""
    mu, log_var = model.encoder.moments(x)
    torch.manual_seed(seed)
    z = mu + torch.randn_like(mu) * (0.5 * log_var).exp()
    return z, mu, log_var, model.decoder(z)


@pytest.mark.parametrize("loss", VAE_LOSSES)
def test_loss_terms_against_direct_computations(loss):
    model = _model(loss)
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.manual_seed(7)
    terms = model.loss_terms(x)
    z, mu, log_var, logits = _sampled(model, x, 7)
    # Bernoulli NLL summed over pixels, averaged over the batch.
    p = torch.sigmoid(logits)
    nll = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum() / len(x)
    assert terms["reconstruction"].item() == pytest.approx(nll.item(), rel=1e-9)
    kl = kl_divergence(Normal(mu, (0.5 * log_var).exp()), Normal(0.0, 1.0)).sum(1).mean()
    assert terms["kl"].item() == pytest.approx(kl.item(), rel=1e-9)
    if loss == "beta_vae":
        assert set(terms) == {"loss", "reconstruction", "kl"}
        expected = terms["reconstruction"] + 4.0 * terms["kl"]
    else:
        assert set(terms) == {"loss", "reconstruction", "kl", "mi", "tc", "dw_kl"}
        mi, tc, dw = _direct_tc(z, mu, log_var, 600)
        assert terms["tc"].item() == pytest.approx(tc.item(), rel=1e-9, abs=1e-9)
        expected = terms["reconstruction"] + mi + 4.0 * tc + dw
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-9)
    torch.manual_seed(7)
    assert model.loss(x).item() == terms["loss"].item()  # the objective fit() minimises


def test_recorder_averages_terms_per_mode_weighted_by_batch_size():
    model = _model("beta_tc_vae")
    generator = torch.Generator().manual_seed(3)
    batches = [torch.rand(n, 1, 32, 32, generator=generator, dtype=torch.float64) for n in (3, 5)]
    with model.recording_terms() as recorder:
        model.train()
        torch.manual_seed(0)
        losses = [model.loss(x).item() for x in batches]
        model.eval()
        test = model.loss(batches[0]).item()
        means = recorder.pop()
        assert recorder.pop() == {}  # popping starts afresh
    model.loss(batches[1])  # after the block nothing records: the recorder stays empty
    assert recorder.pop() == {}
    assert means["train_loss"] == pytest.approx((3 * losses[0] + 5 * losses[1]) / 8, rel=1e-12)
    assert means["test_loss"] == pytest.approx(test, rel=1e-12)
    assert {k.split("_", 1)[1] for k in means} == {
        "loss",
        "reconstruction",
        "kl",
        "mi",
        "tc",
        "dw_kl",
    }


@pytest.mark.parametrize("side", [32, 64])
def test_the_layers_in_order(side):
    """Burgess et al.'s networks: each conv followed by a ReLU, two 256-unit ReLU layers; the
    decoder mirrors them with no ReLU after its last transposed conv (it returns logits)."""
    model = burgess_vae((3, side, side), 5, "beta_vae", 1.0, 10)
    n = 3 if side == 32 else 4
    encoder = [type(m) for m in model.encoder.convs] + [type(m) for m in model.encoder.hidden]
    assert encoder == [nn.Conv2d, nn.ReLU] * n + [nn.Flatten] + [nn.Linear, nn.ReLU] * 2
    assert model.encoder.convs[0].in_channels == 3
    hidden = [type(m) for m in model.decoder.hidden]
    assert hidden == [nn.Linear, nn.ReLU] * 3 + [nn.Unflatten]
    assert [type(m) for m in model.decoder.deconvs] == [nn.ConvTranspose2d, nn.ReLU] * (n - 1) + [
        nn.ConvTranspose2d
    ]
    assert model.decoder.deconvs[-1].out_channels == 3
    assert model.encoder.dim_latent == model.latent_dim == 5


def test_names_and_the_accepted_edges():
    vae = burgess_vae((1, 32, 32), 1, "beta_vae", 0.0, 1)  # beta 0 and d = 1 are valid
    assert vae.name == "vae"
    assert VAE(vae.encoder, vae.decoder, "beta_vae", 1.0, 1).name == "vae"
    assert burgess_vae((1, 32, 32), 2, "beta_tc_vae", 0.5, 1, name="b").name == "b"
    with pytest.raises(ValueError, match=r"square images .* got \(1, 32, 64\)"):
        burgess_vae((1, 32, 64), 2, "beta_vae", 1.0, 1)
    with pytest.raises(ValueError, match="dim_latent must be positive, got 0"):
        burgess_vae((1, 32, 32), 0, "beta_vae", 1.0, 1)
