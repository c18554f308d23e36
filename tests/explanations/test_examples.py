"""Example importance explainers against straightforward per-example loops on tiny models."""

from __future__ import annotations

import copy

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lfxai.explanations.examples import (
    DKNN,
    EXAMPLE_METHODS,
    InfluenceFunctions,
    SimplEx,
    TracIn,
    register,
)
from tests.numerics import gamma

N_TRAIN, N_TEST = 10, 7


class TinyAE(nn.Module):
    """Conv autoencoder for 1x8x8 images; noisy inputs in train mode like a pretext task."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 3, 3, stride=2, padding=1),
            nn.BatchNorm2d(3),
            nn.ReLU(True),
            nn.Flatten(),
            nn.Linear(48, 2),
        )
        self.decoder = nn.Sequential(nn.Linear(2, 64), nn.Sigmoid(), nn.Unflatten(1, (1, 8, 8)))
        self.checkpoints_files: list = []
        self.lr: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            x = x + 0.3 * torch.randn_like(x)
        return self.decoder(self.encoder(x))


class TinyClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 5), nn.Tanh(), nn.Linear(5, 3))
        self.head = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


class LSTMEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, 3, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[1][0][-1]


class LSTMAE(nn.Module):
    """Sequence autoencoder shaped like the ECG5000 one (code repeated over time)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = LSTMEncoder()
        self.decoder = nn.LSTM(3, 3, batch_first=True)
        self.out = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = self.encoder(x)[:, None, :].repeat(1, x.shape[1], 1)
        return self.out(self.decoder(code)[0])


@pytest.fixture()
def model() -> TinyAE:
    torch.manual_seed(0)
    ae = TinyAE()
    bn = ae.encoder[1]
    bn.running_mean.uniform_(-0.2, 0.2)  # non-trivial statistics: eval mode must use them
    bn.running_var.uniform_(0.5, 2.0)
    return ae.train()  # left in train mode on purpose: explainers must switch to eval


@pytest.fixture()
def data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(N_TRAIN, 1, 8, 8, generator=gen), torch.rand(N_TEST, 1, 8, 8, generator=gen)


# Straightforward per-example references ----------------------------------------------------


def naive_grads(model: nn.Module, loss_f, x: torch.Tensor, y=None) -> torch.Tensor:
    model.eval()
    rows = []
    for i in range(len(x)):
        target = x[i : i + 1] if y is None else y[i : i + 1]
        loss = loss_f(model(x[i : i + 1]), target)
        grads = torch.autograd.grad(loss, list(model.encoder.parameters()))
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


def naive_hvp(model: nn.Module, x: torch.Tensor, v: torch.Tensor, loss_f=None) -> torch.Tensor:
    params = list(model.encoder.parameters())
    loss_f = loss_f or nn.MSELoss()
    grads = torch.autograd.grad(loss_f(model(x), x), params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    return torch.cat([h.reshape(-1) for h in torch.autograd.grad(flat @ v, params)])


def naive_hessian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    n_params = sum(p.numel() for p in model.encoder.parameters())
    return torch.stack([naive_hvp(model.eval(), x, e) for e in torch.eye(n_params)])


def naive_codes(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval().encoder(x)


# Registry and API --------------------------------------------------------------------------


def test_registry_names_and_duplicates() -> None:
    assert set(EXAMPLE_METHODS) == {"InfluenceFunctions", "TracIn", "SimplEx", "DKNN"}
    for name, cls in EXAMPLE_METHODS.items():
        assert cls.name == name
    with pytest.raises(KeyError):
        register(dict(EXAMPLE_METHODS), "TracIn", TracIn)


# Each method's own option, and one that only another method takes.
OWN_OPTION = {
    "InfluenceFunctions": ("recursion_depth", 2),
    "TracIn": ("learning_rate", 0.5),
    "SimplEx": ("simplex_steps", 20),
    "DKNN": ("n_neighbours", 3),
}
FOREIGN_OPTION = {
    "InfluenceFunctions": ("simplex_steps", 20),
    "TracIn": ("recursion_depth", 2),
    "SimplEx": ("learning_rate", 0.1),
    "DKNN": ("recursion_depth", 3),
}


@pytest.mark.parametrize("name", sorted(EXAMPLE_METHODS))
def test_an_option_of_another_method_is_a_type_error_not_dropped(model, data, name) -> None:
    """Options go to the constructor, by name; the calls take only the examples."""
    x_train, x_test = data
    cls = EXAMPLE_METHODS[name]
    key, value = FOREIGN_OPTION[name]
    with pytest.raises(TypeError, match=rf"unexpected keyword argument '{key}'"):
        cls(model, nn.MSELoss(), X_train=x_train, **{key: value})
    own, own_value = OWN_OPTION[name]
    explainer = cls(model, nn.MSELoss(), X_train=x_train, progress=False, **{own: own_value})
    with pytest.raises(TypeError, match=rf"unexpected keyword argument '{own}'"):
        explainer.attribute(x_test, [0, 1], **{own: own_value})
    with pytest.raises(TypeError, match=rf"unexpected keyword argument '{own}'"):
        explainer.attribute_loader("cpu", [(x_train,)], [(x_test,)], **{own: own_value})


@pytest.mark.parametrize("name", sorted(EXAMPLE_METHODS))
def test_attribute_loader_shapes_with_mismatched_batches(model, data, tmp_path, name) -> None:
    x_train, x_test = data
    torch.save(model.state_dict(), tmp_path / "c1.pt")
    model.checkpoints_files, model.lr = [str(tmp_path / "c1.pt")], 0.5
    labels = torch.zeros(N_TRAIN, dtype=torch.long), torch.zeros(N_TEST, dtype=torch.long)
    train_loader = DataLoader(TensorDataset(x_train, labels[0]), batch_size=4)
    test_loader = DataLoader(TensorDataset(x_test, labels[1]), batch_size=3)
    opts = dict([OWN_OPTION[name]])
    explainer = EXAMPLE_METHODS[name](model, nn.MSELoss(), X_train=x_train, progress=False, **opts)
    scores = explainer.attribute_loader(torch.device("cpu"), train_loader, test_loader)
    assert scores.shape == (N_TEST, N_TRAIN)
    assert torch.isfinite(scores).all()
    one_batch = explainer.attribute_loader(
        "cpu", [(x_train, labels[0])], DataLoader(TensorDataset(x_test), batch_size=N_TEST)
    )
    torch.testing.assert_close(scores, one_batch, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(scores, explainer.attribute(x_test, None), rtol=1e-4, atol=1e-6)
    assert model.training and model.encoder[1].training  # modes restored
    assert str(explainer) == name


def test_toy_example_call_pattern() -> None:
    """The README's SimplEx call on the real MNIST autoencoder with (image, label) loaders."""
    from lfxai.models.images import AutoEncoderMnist, DecoderMnist, EncoderMnist

    torch.manual_seed(0)
    model = AutoEncoderMnist(EncoderMnist(10), DecoderMnist(10), latent_dim=10)
    images, labels = torch.rand(30, 1, 28, 28), torch.randint(0, 10, (30,))
    train_subloader = DataLoader(TensorDataset(images[:20], labels[:20]), batch_size=20)
    test_loader = DataLoader(TensorDataset(images[20:], labels[20:]), batch_size=4)
    attr_method = SimplEx(model, loss_f=nn.MSELoss())
    example_importance = attr_method.attribute_loader("cpu", train_subloader, test_loader)
    assert example_importance.shape == (10, 20)
    torch.testing.assert_close(example_importance.sum(1), torch.ones(10))


# Exactness against per-example loops --------------------------------------------------------


def test_tracin_matches_pairwise_loop(model, data, tmp_path) -> None:
    x_train, x_test = data
    states = []
    for c in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        states.append(copy.deepcopy(model.state_dict()))
        torch.save(states[-1], tmp_path / f"c{c}.pt")
    model.checkpoints_files = [str(tmp_path / f"c{c}.pt") for c in range(3)]
    model.lr = 0.01
    before = copy.deepcopy(model.state_dict())
    scores = TracIn(model, nn.MSELoss(), tmp_path, x_train, progress=False).attribute(
        x_test, [1, 3, 4]
    )
    expected = torch.zeros(N_TEST, 3)
    for state in states:
        ref = copy.deepcopy(model)
        ref.load_state_dict(state)
        g_train = naive_grads(ref, nn.MSELoss(), x_train[[1, 3, 4]])
        g_test = naive_grads(ref, nn.MSELoss(), x_test)
        for i in range(N_TEST):
            for j in range(3):
                expected[i, j] += 0.01 * torch.dot(g_test[i], g_train[j])
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-9)
    for key, value in model.state_dict().items():  # the model itself is untouched
        torch.testing.assert_close(value, before[key])
    rates = TracIn(
        model, nn.MSELoss(), X_train=x_train, progress=False, learning_rate=[0.0, 0.0, 1.0]
    ).attribute(x_test, [1, 3, 4])
    g_last = copy.deepcopy(model)
    g_last.load_state_dict(states[-1])
    last = (
        naive_grads(g_last, nn.MSELoss(), x_test)
        @ naive_grads(g_last, nn.MSELoss(), x_train[[1, 3, 4]]).T
    )
    torch.testing.assert_close(rates, last, rtol=1e-4, atol=1e-9)


@pytest.mark.filterwarnings("ignore:There is a performance drop")
def test_tracin_supports_label_losses_and_lstms() -> None:
    torch.manual_seed(0)
    clf = TinyClassifier()
    x, y = torch.rand(6, 1, 8, 8), torch.randint(0, 4, (6,))
    ce = nn.CrossEntropyLoss()
    explainer = TracIn(
        clf,
        ce,
        X_train=x,
        Y_train=y,
        target="label",
        progress=False,
        checkpoints=[clf.state_dict()],
    )
    scores = explainer.attribute(x[:2], None, Y_test=y[:2])
    expected = naive_grads(clf, ce, x[:2], y[:2]) @ naive_grads(clf, ce, x, y).T
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-9)

    lstm = LSTMAE()
    seqs = torch.randn(5, 12, 1)
    scores = TracIn(
        lstm,
        nn.L1Loss(),
        X_train=seqs,
        progress=False,
        checkpoints=[lstm.state_dict()],
        learning_rate=1.0,
    ).attribute(seqs[:2], None)
    g_test, g_train = naive_grads(lstm, nn.L1Loss(), seqs[:2]), naive_grads(lstm, nn.L1Loss(), seqs)
    torch.testing.assert_close(scores, g_test @ g_train.T, rtol=1e-4, atol=1e-9)
    influence = InfluenceFunctions(
        lstm,
        nn.L1Loss(),
        X_train=seqs,
        progress=False,
        train_loader_replacement=[(seqs[1:4],)],
        recursion_depth=2,
        scale=2.0,
    ).attribute(seqs[:2], None)
    ihvp = g_train.clone()
    for _ in range(2):
        ihvp = (
            g_train
            + (1 - 1e-3) * ihvp
            - torch.stack([naive_hvp(lstm, seqs[1:4], v, nn.L1Loss()) for v in ihvp]) / 2.0
        )
    torch.testing.assert_close(influence, g_test @ ihvp.T / 2.0, rtol=1e-4, atol=1e-9)


def test_dknn_matches_pairwise_loop(model, data) -> None:
    """DkNN is ``1 / ||h_test - h_train||^2`` of the encoder's codes, for every pair.

    Two separate rules, each with a tolerance that holds on any BLAS path: (1) the codes
    the explainer encodes in chunks equal the codes of one whole batch up to float32
    rounding of the encoder; (2) given those codes, the scores are the inverse squared
    distances computed pair by pair in float64. Comparing the scores with codes of a
    different batching would amplify float32 noise by ``|h| / ||h_test - h_train||``.
    """
    x_train, x_test = data
    explainer = DKNN(model, X_train=x_train, chunk_size=3)
    scores = explainer.attribute(x_test, None)
    h_train, h_test = explainer.representations(x_train), explainer.representations(x_test)
    torch.testing.assert_close(h_train, naive_codes(model, x_train), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h_test, naive_codes(model, x_test), rtol=1e-5, atol=1e-5)
    expected = torch.tensor(
        [[1 / ((a - b) ** 2).sum().item() for b in h_train.double()] for a in h_test.double()],
        dtype=torch.float64,
    )
    # The direct difference of float32 codes and a sum of d squares: a few float32 epsilons.
    torch.testing.assert_close(scores.double(), expected, rtol=1e-5, atol=0)
    top = DKNN(model, X_train=x_train, chunk_size=3, n_neighbours=3).attribute(x_test, None)
    assert ((top > 0).sum(1) == 3).all()
    kept = top > 0
    # The kept scores are the full matrix's own entries, bit for bit.
    torch.testing.assert_close(top[kept], scores[kept], rtol=0, atol=0)
    assert (
        scores[kept].view(N_TEST, 3).min(1).values >= scores.where(~kept, 0).max(1).values
    ).all()


def test_lissa_matches_per_example_recursion(model, data) -> None:
    x_train, x_test = data
    gen = torch.Generator().manual_seed(3)
    pool = torch.rand(40, 1, 8, 8, generator=gen)
    batches = [(pool[torch.randint(40, (8,), generator=gen)],) for _ in range(4)]
    damp, scale, depth = 0.01, 5.0, 6  # the batches are cycled: 6 steps use 4 batches
    scores = InfluenceFunctions(
        model,
        nn.MSELoss(),
        X_train=x_train,
        progress=False,
        train_loader_replacement=batches,
        recursion_depth=depth,
        damping=damp,
        scale=scale,
    ).attribute(x_test, [0, 2, 5])
    g_train = naive_grads(model, nn.MSELoss(), x_train[[0, 2, 5]])
    g_test = naive_grads(model, nn.MSELoss(), x_test)
    expected = torch.zeros(N_TEST, 3)
    for j in range(3):
        v = g_train[j].clone()
        for step in range(depth):
            v = g_train[j] + (1 - damp) * v - naive_hvp(model, batches[step % 4][0], v) / scale
        for i in range(N_TEST):
            expected[i, j] = torch.dot(g_test[i], v / scale)
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-8)
    # Without a loader, batches are resampled with a seed: deterministic, seed-dependent.
    opts = {"recursion_depth": 3, "damping": damp, "scale": scale}
    again = [
        InfluenceFunctions(
            model, nn.MSELoss(), X_train=x_train, progress=False, seed=s, **opts
        ).attribute(x_test, None)
        for s in (0, 0, 1)
    ]
    torch.testing.assert_close(again[0], again[1])
    assert not torch.allclose(again[0], again[2])


def test_exact_and_arnoldi_match_dense_damped_inverse(model, data) -> None:
    x_train, x_test = data
    damp = 0.1
    hessian = naive_hessian(model, x_train)
    inverse = torch.linalg.inv((hessian + hessian.T) / 2 + damp * torch.eye(len(hessian)))
    g_train, g_test = (
        naive_grads(model, nn.MSELoss(), x_train),
        naive_grads(model, nn.MSELoss(), x_test),
    )
    expected = g_test @ inverse @ g_train.T

    def explainer(**options) -> InfluenceFunctions:
        return InfluenceFunctions(model, nn.MSELoss(), X_train=x_train, progress=False, **options)

    exact = explainer(influence_method="exact", damping=damp, hvp_batch_size=4).attribute(
        x_test, None
    )
    torch.testing.assert_close(exact, expected, rtol=1e-3, atol=1e-6)
    n_params = len(hessian)
    full = explainer(
        influence_method="arnoldi", damping=damp, arnoldi_rank=n_params, arnoldi_iter=n_params
    ).attribute(x_test, None)
    # Full rank: the same damped inverse as the dense one. Both apply (H + damp I)^-1 to
    # float32 gradients of P entries; rounding of order gamma(P) in the products is amplified
    # at most by the condition number of H + damp I (Higham 2002, Section 7.1), normwise.
    eigenvalues = torch.linalg.eigvalsh(((hessian + hessian.T) / 2).double()) + damp
    condition = (eigenvalues.abs().max() / eigenvalues.abs().min()).item()
    bound = condition * gamma(n_params) * expected.abs().max().item()
    assert (full - expected).abs().max().item() <= bound
    low = explainer(
        influence_method="arnoldi", damping=damp, arnoldi_rank=30, arnoldi_iter=60
    ).attribute(x_test, None)
    rho = spearmanr(low.flatten(), expected.flatten()).statistic
    assert rho > 0.9, rho


def test_lissa_converges_to_exact_with_effective_damping(model, data) -> None:
    """LiSSA's fixed point is (H + damp * scale * I)^-1 g with a fixed full-batch Hessian."""
    x_train, x_test = data

    def explainer(**options) -> InfluenceFunctions:
        return InfluenceFunctions(model, nn.MSELoss(), X_train=x_train, progress=False, **options)

    lissa = explainer(
        train_loader_replacement=[(x_train,)],
        recursion_depth=60,
        damping=0.5,  # with |eigenvalues| < 0.1 (this model) the recursion contracts by < 0.75
        scale=0.2,
    ).attribute(x_test, None)
    exact = explainer(influence_method="exact", damping=0.1).attribute(x_test, None)
    torch.testing.assert_close(lissa, exact, rtol=1e-3, atol=1e-5 * exact.abs().max())


def test_simplex_no_worse_than_reference_optimiser(model, data) -> None:
    x_train, x_test = data
    n_epoch = 300
    weights = SimplEx(model, X_train=x_train, progress=False, simplex_steps=n_epoch).attribute(
        x_test, None
    )
    assert weights.shape == (N_TEST, N_TRAIN) and (weights >= 0).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(N_TEST))
    h_train, h_test = naive_codes(model, x_train), naive_codes(model, x_test)
    for i in range(N_TEST):  # the reference: one autograd + Adam optimisation per example
        logits = torch.zeros(1, N_TRAIN, requires_grad=True)
        optimizer = torch.optim.Adam([logits])
        for _ in range(n_epoch):
            optimizer.zero_grad()
            error = ((torch.softmax(logits, -1) @ h_train - h_test[i : i + 1]) ** 2).sum()
            error.backward()
            optimizer.step()
        ref_error = ((torch.softmax(logits, -1) @ h_train - h_test[i]) ** 2).sum()
        our_error = ((weights[i] @ h_train - h_test[i]) ** 2).sum()
        assert our_error <= ref_error * (1 + 1e-4) + 1e-7


def test_explainers_are_deterministic_in_train_mode(model, data) -> None:
    x_train, x_test = data
    for cls in (InfluenceFunctions, SimplEx, DKNN):
        opts = dict([OWN_OPTION[cls.name]])
        explainer = cls(model, nn.MSELoss(), X_train=x_train, progress=False, **opts)
        first, second = explainer.attribute(x_test, None), explainer.attribute(x_test, None)
        torch.testing.assert_close(first, second, rtol=0, atol=0)
