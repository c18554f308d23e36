"""The Hessian split at the encoder's code gives the generic Hessian-vector products, and is
declined (the generic products are used) wherever its structure is absent."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lfxai.explanations.examples import code_hvp, per_sample_grads
from lfxai.explanations.examples.code_hvp import MAX_CODE, MIN_VECTORS, CodeSplit
from lfxai.explanations.examples.per_sample_grads import LossFunctional
from lfxai.models.autoencoder import AutoEncoder, TrainableModel


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _conv_ae(code: int = 2) -> AutoEncoder:
    """A small MNIST-like autoencoder (conv, BatchNorm with running statistics, ReLU) on 8x8."""
    torch.manual_seed(0)
    encoder = nn.Sequential(
        nn.Conv2d(1, 3, 3, stride=2, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, code),
    )
    decoder = nn.Sequential(nn.Linear(code, 64), nn.Sigmoid(), nn.Unflatten(1, (1, 8, 8)))
    model = AutoEncoder(encoder, decoder, latent_dim=code).double()
    batch_norm = encoder[1]
    batch_norm.running_mean.uniform_(-0.5, 0.5, generator=_generator(3))
    batch_norm.running_var.uniform_(0.5, 2.0, generator=_generator(4))
    return model.eval()


class _Classifier(TrainableModel):
    """Encoder, linear head and cross-entropy against labels."""

    target = "label"

    def __init__(self) -> None:
        super().__init__("classifier", nn.CrossEntropyLoss())
        self.encoder = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
        self.head = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class _Tied(TrainableModel):
    """The decoder reuses the encoder's weight: the loss meets the explained weight twice."""

    def __init__(self) -> None:
        super().__init__("tied")
        self.encoder = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.encoder(x)) @ self.encoder.weight


class _Autoencoder(TrainableModel):
    """A linear encoder and decoder; subclasses call the encoder in unusual ways."""

    def __init__(self, encoder: nn.Module | None = None) -> None:
        super().__init__(type(self).__name__)
        self.encoder = nn.Linear(6, 2) if encoder is None else encoder
        self.decoder = nn.Linear(2, 6)


class _Coupled(_Autoencoder):
    """The decoder centres the codes over the batch: each loss depends on every code."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)
        return self.decoder(torch.tanh(z - z.mean(dim=0)))


class _Twice(_Autoencoder):
    """The encoder is called twice by the loss (a code penalty besides the reconstruction)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.tanh(self.encoder(x)))

    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return super().loss(x, y) + self.encoder(x).pow(2).mean()


class _TiedWhole(TrainableModel):
    """The decoder reuses every explained parameter (a bias-free encoder's only weight)."""

    def __init__(self) -> None:
        super().__init__("tied-whole")
        self.encoder = nn.Linear(6, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.encoder(x)) @ self.encoder.weight


class _Scaled(nn.Module):
    """A linear encoder called with a number besides its input."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor, factor: float = 1.0) -> torch.Tensor:
        return self.linear(x) * factor


class _ByKeyword(_Autoencoder):
    """The encoder's input is passed by keyword."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.tanh(self.encoder(input=x)))


class _Table(nn.Module):
    """A learnt code per example of a batch of 10, called with no input (as in GLO)."""

    def __init__(self) -> None:
        super().__init__()
        self.codes = nn.Parameter(torch.randn(10, 2))

    def forward(self) -> torch.Tensor:
        return self.codes


class _CodeTable(_Autoencoder):
    """The encoder is called with nothing: its codes are parameters."""

    def __init__(self) -> None:
        super().__init__(_Table())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.tanh(self.encoder()))


class _NumberByKeyword(_Autoencoder):
    """The encoder is called with its input and, by keyword, a number."""

    def __init__(self) -> None:
        super().__init__(_Scaled())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.tanh(self.encoder(x, factor=2.0)))


class _WithNumber(_Autoencoder):
    """The encoder is called with a number besides its input."""

    def __init__(self) -> None:
        super().__init__(_Scaled())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.tanh(self.encoder(x, 2.0)))


class _Halves(nn.Module):
    """Codes of the sums of the first and second halves of its inputs: 2 B inputs, B codes."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).reshape(2, -1, 2).sum(0)


class _OnTwoCopies(_Autoencoder):
    """The encoder sees the batch twice over (2 B inputs for B examples' codes)."""

    def __init__(self) -> None:
        super().__init__(_Halves())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.tanh(self.encoder(torch.cat([x, x.flip(1)]))))


class _Summed(nn.Module):
    """One number for the whole batch."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).sum()


class _BatchCode(_Autoencoder):
    """The encoder's output is a scalar, not one row per example."""

    def __init__(self) -> None:
        super().__init__(_Summed())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.tanh(self.encoder(x) * x[:, :2]))


class _PairedCode(_Autoencoder):
    """The encoder's output has one row per pair of examples (B / 2 rows of 4)."""

    def __init__(self) -> None:
        super().__init__(nn.Sequential(nn.Linear(6, 2), nn.Unflatten(0, (-1, 2)), nn.Flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.tanh(self.encoder(x).reshape(len(x), 2)))


def _wide() -> AutoEncoder:
    """Codes of MAX_CODE + 1 numbers: more than the split takes."""
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(6, MAX_CODE + 1), nn.Tanh())
    return AutoEncoder(encoder, nn.Linear(MAX_CODE + 1, 6), MAX_CODE + 1).double().eval()


def _widest() -> AutoEncoder:
    """Codes of exactly MAX_CODE numbers: the widest the split takes."""
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(6, MAX_CODE), nn.Tanh())
    return AutoEncoder(encoder, nn.Linear(MAX_CODE, 6), MAX_CODE).double().eval()


def _case(model: nn.Module, shape: tuple[int, ...], labels: int = 0):
    model = model.double().eval()
    functional = LossFunctional(model)
    params, fixed = functional.split()
    x = torch.rand(10, *shape, generator=_generator(1), dtype=torch.float64)
    y = torch.randint(labels, (10,), generator=_generator(2)) if labels else None
    t = functional.targets(x, y)
    vectors = torch.randn(
        MIN_VECTORS, functional.n_params(params), generator=_generator(5), dtype=torch.float64
    )
    return functional, params, fixed, x, t, vectors


def _generic(functional, params, fixed, x, t, vectors, monkeypatch) -> torch.Tensor:
    with monkeypatch.context() as patch:
        patch.setattr(per_sample_grads, "MIN_VECTORS", len(vectors) + 1)
        return functional.hvp(params, fixed, x, t, vectors)


def _assert_close64(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float64 rounding: the same terms summed in another order differ by a few
    ulps (~1e-16) of the largest product; 1e-10 of it leaves a margin of about 10^5."""
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10 * scale)


@pytest.mark.parametrize(
    ("model", "shape", "labels"),
    [(_conv_ae, (1, 8, 8), 0), (_Classifier, (5,), 4), (_widest, (6,), 0)],
    ids=["conv-autoencoder", "label-classifier", "widest-code"],
)
def test_the_split_gives_the_generic_products(model, shape, labels, monkeypatch):
    functional, params, fixed, x, t, vectors = _case(model(), shape, labels)
    assert functional._code_split.prepare(params, fixed, x, t) is not None
    split = functional.hvp(params, fixed, x, t, vectors, chunk_size=7)
    _assert_close64(split, _generic(functional, params, fixed, x, t, vectors, monkeypatch))


def test_the_whole_model_as_explained_module_splits_at_its_output(monkeypatch):
    """A regression explained whole: its code is its output, its Hessian all Gauss-Newton."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1).double()
    functional = LossFunctional(model, nn.MSELoss(), target="label")
    params, fixed = functional.split()
    x = torch.randn(10, 3, generator=_generator(1), dtype=torch.float64)
    t = torch.randn(10, 1, generator=_generator(2), dtype=torch.float64)
    vectors = torch.randn(MIN_VECTORS, 4, generator=_generator(3), dtype=torch.float64)
    assert functional._code_split.prepare(params, fixed, x, t) is not None
    ones = torch.cat([x, torch.ones(10, 1, dtype=torch.float64)], dim=1)
    _assert_close64(
        functional.hvp(params, fixed, x, t, vectors), vectors @ (2 * ones.T @ ones / 10)
    )


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        pytest.param(_Tied, (6,), id="tied-weights"),
        pytest.param(_TiedWhole, (6,), id="every-weight-tied"),
        pytest.param(_Coupled, (6,), id="examples-coupled"),
        pytest.param(_Twice, (6,), id="encoder-called-twice"),
        pytest.param(_wide, (6,), id="code-too-wide"),
        pytest.param(_ByKeyword, (6,), id="input-by-keyword"),
        pytest.param(_CodeTable, (6,), id="called-with-nothing"),
        pytest.param(_NumberByKeyword, (6,), id="number-by-keyword"),
        pytest.param(_WithNumber, (6,), id="number-beside-input"),
        pytest.param(_OnTwoCopies, (6,), id="batch-encoded-twice-over"),
        pytest.param(_BatchCode, (6,), id="one-code-per-batch"),
        pytest.param(_PairedCode, (6,), id="code-rows-not-examples"),
    ],
)
def test_the_split_is_declined_and_the_generic_products_are_used(model, shape, monkeypatch):
    functional, params, fixed, x, t, vectors = _case(model(), shape)
    assert functional._code_split.prepare(params, fixed, x, t) is None
    expected = _generic(functional, params, fixed, x, t, vectors, monkeypatch)
    _assert_close64(functional.hvp(params, fixed, x, t, vectors), expected)


def test_a_module_outside_the_model_is_never_split():
    model = _conv_ae()
    stranger = nn.Linear(2, 2)
    split = CodeSplit(model, stranger, ["encoder.4.weight"], lambda *args: None)
    assert split.prepare({}, {}, torch.zeros(1), torch.zeros(1)) is None


def test_the_split_starts_at_min_vectors(monkeypatch):
    functional, params, fixed, x, t, vectors = _case(_conv_ae(), (1, 8, 8))
    calls: list[int] = []
    real = code_hvp.CodeSplit.prepare

    def spy(self, *args):
        calls.append(1)
        return real(self, *args)

    monkeypatch.setattr(code_hvp.CodeSplit, "prepare", spy)
    functional.hvp(params, fixed, x, t, vectors[: MIN_VECTORS - 1])
    assert calls == []
    functional.hvp(params, fixed, x, t, vectors)
    assert calls == [1]
