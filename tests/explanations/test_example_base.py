"""The example explainers' common machinery: ``collect``, ``attribute``/``attribute_loader``,
the gradient explainers' parameters and chunking, and the method registry.

``Recorder`` is an explainer whose method only records what it is handed, so the rules of the
base class (which rows, which labels, on which device) are checked without any method's
numerics. The gradient rules use TracIn with one checkpoint, whose scores are the plain
products of per-example gradients.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lfxai.explanations.examples import DKNN, TracIn, register
from lfxai.explanations.examples.base import ExampleBasedExplainer, collect

N_TRAIN, N_TEST = 7, 5


class Recorder(ExampleBasedExplainer):
    """Records the arguments of ``_attribute`` and scores every pair 0 (on the CPU)."""

    name = "Recorder"

    def _attribute(
        self,
        x_train: torch.Tensor,
        y_train: torch.Tensor | None,
        x_test: torch.Tensor,
        y_test: torch.Tensor | None,
    ) -> torch.Tensor:
        self.seen = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
        return torch.zeros(len(x_test), len(x_train))


class Classifier(nn.Module):
    """A two-layer classifier of 3-dimensional inputs into 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(3, 5), nn.Tanh())
        self.head = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=gen), torch.randint(0, 4, (n,), generator=gen)


def _grads(model: nn.Module, module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy gradients w.r.t. ``module``'s parameters, one example at a time."""
    rows = []
    for i in range(len(x)):
        loss = nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        grads = torch.autograd.grad(loss, list(module.parameters()))
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


# collect -------------------------------------------------------------------------------------


def test_collect_concatenates_inputs_and_labels_of_uneven_batches() -> None:
    x, y = _data(N_TRAIN, seed=1)
    loader = DataLoader(TensorDataset(x, y), batch_size=3)  # batches of 3, 3 and 1
    got_x, got_y = collect(loader, torch.device("cpu"))
    assert torch.equal(got_x, x)
    assert got_y is not None and torch.equal(got_y, y)


def test_collect_takes_bare_tensor_batches_as_inputs_without_labels() -> None:
    x, _ = _data(N_TRAIN, seed=1)
    got_x, got_y = collect([x[:4], x[4:]], torch.device("cpu"))
    assert torch.equal(got_x, x)
    assert got_y is None


@pytest.mark.parametrize(
    "second",
    [lambda x, y: (x,), lambda x, y: (x, ["a label"] * len(x))],
    ids=["a batch without labels", "non-tensor labels"],
)
def test_collect_gives_no_labels_unless_every_batch_has_a_label_tensor(second) -> None:
    x, y = _data(N_TRAIN, seed=1)
    got_x, got_y = collect([(x[:4], y[:4]), second(x[4:], y[4:])], torch.device("cpu"))
    assert torch.equal(got_x, x)
    assert got_y is None


def test_collect_of_an_empty_loader_is_an_error_saying_so() -> None:
    with pytest.raises(ValueError, match="^empty loader$"):
        collect([], torch.device("cpu"))


def test_collect_puts_inputs_and_labels_on_the_given_device() -> None:
    # The meta device stands for any device other than the loader's (the CPU).
    x, y = _data(N_TRAIN, seed=1)
    got_x, got_y = collect([(x[:4], y[:4]), (x[4:], y[4:])], torch.device("meta"))
    assert got_x.device.type == "meta" and got_x.shape == x.shape
    assert got_y is not None and got_y.device.type == "meta" and got_y.shape == y.shape


# attribute and attribute_loader --------------------------------------------------------------


def test_attribute_hands_the_selected_train_rows_and_their_labels_to_the_method() -> None:
    (x_train, y_train), (x_test, y_test) = _data(N_TRAIN, 1), _data(N_TEST, 2)
    explainer = Recorder(nn.Linear(3, 1), X_train=x_train, Y_train=y_train)
    scores = explainer.attribute(x_test, [4, 0, 4], Y_test=y_test)
    assert scores.shape == (N_TEST, 3)
    seen = explainer.seen
    assert torch.equal(seen["x_train"], x_train[[4, 0, 4]])
    assert torch.equal(seen["y_train"], y_train[[4, 0, 4]])
    assert torch.equal(seen["x_test"], x_test) and torch.equal(seen["y_test"], y_test)


def test_attribute_loader_hands_the_loaders_examples_and_labels_to_the_method() -> None:
    (x_train, y_train), (x_test, y_test) = _data(N_TRAIN, 1), _data(N_TEST, 2)
    explainer = Recorder(nn.Linear(3, 1))
    train_loader = DataLoader(TensorDataset(x_train, y_train), batch_size=3)
    test_loader = DataLoader(TensorDataset(x_test, y_test), batch_size=2)
    scores = explainer.attribute_loader("cpu", train_loader, test_loader)
    assert scores.shape == (N_TEST, N_TRAIN)
    seen = explainer.seen
    assert torch.equal(seen["x_train"], x_train) and torch.equal(seen["y_train"], y_train)
    assert torch.equal(seen["x_test"], x_test) and torch.equal(seen["y_test"], y_test)


def test_the_method_gets_every_example_on_the_models_device() -> None:
    # Data on the CPU, model on the meta device (standing for a GPU).
    (x_train, y_train), (x_test, y_test) = _data(N_TRAIN, 1), _data(N_TEST, 2)
    explainer = Recorder(nn.Linear(3, 1, device="meta"), X_train=x_train, Y_train=y_train)
    explainer.attribute(x_test, [1, 2], Y_test=y_test)
    assert {k: v.device.type for k, v in explainer.seen.items()} == dict.fromkeys(
        explainer.seen, "meta"
    )
    explainer.seen = {}
    loaders = [(x_train, y_train)], [(x_test, y_test)]
    explainer.attribute_loader(torch.device("meta"), *loaders)
    assert {k: v.device.type for k, v in explainer.seen.items()} == dict.fromkeys(
        explainer.seen, "meta"
    )


class Weighted(Recorder):
    """Scores every pair with a trainable weight: a result still attached to a graph."""

    name = "Weighted"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.weight = torch.tensor(2.0, requires_grad=True)

    def _attribute(
        self,
        x_train: torch.Tensor,
        y_train: torch.Tensor | None,
        x_test: torch.Tensor,
        y_test: torch.Tensor | None,
    ) -> torch.Tensor:
        return self.weight * super()._attribute(x_train, y_train, x_test, y_test)


def test_scores_come_back_detached_from_the_methods_graph() -> None:
    (x_train, _), (x_test, _) = _data(N_TRAIN, 1), _data(N_TEST, 2)
    explainer = Weighted(nn.Linear(3, 1), X_train=x_train)
    assert not explainer.attribute(x_test).requires_grad
    assert not explainer.attribute_loader("cpu", [x_train], [x_test]).requires_grad


def test_attribute_without_X_train_says_the_method_needs_it() -> None:
    explainer = DKNN(nn.Linear(3, 2), progress=False)
    with pytest.raises(ValueError, match="^DKNN.attribute needs X_train at construction$"):
        explainer.attribute(torch.zeros(2, 3))


def test_attribute_loader_refuses_a_device_other_than_the_models() -> None:
    explainer = DKNN(nn.Linear(3, 2), progress=False)
    loader = [torch.zeros(2, 3)]
    with pytest.raises(ValueError, match="^model is on cpu, but device=cuda was given$"):
        explainer.attribute_loader("cuda", loader, loader)


def test_an_empty_train_selection_gives_a_score_matrix_without_columns() -> None:
    (x_train, y_train), (x_test, y_test) = _data(N_TRAIN, 1), _data(N_TEST, 2)
    scores = _tracin(Classifier(), x_train, y_train).attribute(x_test, [], Y_test=y_test)
    assert scores.shape == (N_TEST, 0)


# Options -------------------------------------------------------------------------------------


def test_the_calls_take_only_examples_an_option_is_pythons_own_type_error() -> None:
    """Options go to the constructor; a misspelt one is refused there, by Python."""
    (x_train, _), (x_test, _) = _data(N_TRAIN, 1), _data(N_TEST, 2)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'n_neighbors'"):
        DKNN(nn.Linear(3, 2), X_train=x_train, n_neighbors=1)
    explainer = DKNN(nn.Linear(3, 2), X_train=x_train, progress=False, n_neighbours=1)
    for name in ("n_neighbours", "save_dir", "x_train"):
        with pytest.raises(TypeError, match=rf"unexpected keyword argument '{name}'"):
            explainer.attribute(x_test, **{name: 1})
        with pytest.raises(TypeError, match=rf"unexpected keyword argument '{name}'"):
            explainer.attribute_loader("cpu", [x_train], [x_test], **{name: 1})


def test_save_dir_is_accepted_by_the_gradient_explainers_constructor_and_ignored() -> None:
    """The reference API passes ``save_dir`` to the constructor; it changes nothing here."""
    (x_train, y_train), (x_test, y_test) = _data(N_TRAIN, 1), _data(N_TEST, 2)
    model = Classifier()
    expected = _tracin(model, x_train, y_train).attribute(x_test, Y_test=y_test)
    kept = _tracin(model, x_train, y_train, save_dir="elsewhere").attribute(x_test, Y_test=y_test)
    assert torch.equal(kept, expected)


# Gradient explainers -------------------------------------------------------------------------


def _tracin(
    model: nn.Module, x_train: torch.Tensor | None, y_train: torch.Tensor | None, **kwargs: Any
) -> TracIn:
    """TracIn with the model's current weights as its one checkpoint, at learning rate 1."""
    kwargs.setdefault("progress", False)
    return TracIn(
        model,
        nn.CrossEntropyLoss(),
        X_train=x_train,
        Y_train=y_train,
        target="label",
        checkpoints=[model.state_dict()],
        **kwargs,
    )


def test_attribute_loader_gives_a_label_target_the_loaders_labels() -> None:
    (x_train, y_train), (x_test, y_test) = _data(N_TRAIN, 1), _data(N_TEST, 2)
    model = Classifier()
    explainer = _tracin(model, None, None, learning_rate=1.0)
    scores = explainer.attribute_loader(
        "cpu",
        DataLoader(TensorDataset(x_train, y_train), batch_size=3),
        DataLoader(TensorDataset(x_test, y_test), batch_size=2),
    )
    expected = (
        _grads(model, model.encoder, x_test, y_test)
        @ _grads(model, model.encoder, x_train, y_train).T
    )
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-7)


def test_params_module_chooses_the_differentiated_parameters() -> None:
    (x_train, y_train), (x_test, y_test) = _data(N_TRAIN, 1), _data(N_TEST, 2)
    model = Classifier()
    head = _tracin(model, x_train, y_train, params_module=model.head, learning_rate=1.0)
    scores = head.attribute(x_test, Y_test=y_test)
    expected = (
        _grads(model, model.head, x_test, y_test) @ _grads(model, model.head, x_train, y_train).T
    )
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-7)
    encoder = _tracin(model, x_train, y_train, learning_rate=1.0).attribute(x_test, Y_test=y_test)
    assert not torch.allclose(scores, encoder)  # the default (the encoder) is told apart


@pytest.mark.parametrize("chunk_size", [1, 2, 4])
def test_gradient_scores_do_not_depend_on_the_test_chunk_size(chunk_size: int) -> None:
    """Chunks of test examples, the last one short, give the rows of one whole chunk.

    In float64 the only differences are rounding orders of vmapped products over P = 20
    parameters, far below the tolerance.
    """
    (x_train, y_train), (x_test, y_test) = _data(N_TRAIN, 1), _data(N_TEST, 2)
    model = Classifier().double()
    x_train, x_test = x_train.double(), x_test.double()
    whole = _tracin(model, x_train, y_train).attribute(x_test, Y_test=y_test)
    chunked = _tracin(model, x_train, y_train, chunk_size=chunk_size)
    scores = chunked.attribute(x_test, Y_test=y_test)
    assert scores.shape == (N_TEST, N_TRAIN)
    torch.testing.assert_close(scores, whole, rtol=1e-12, atol=1e-15)


# register ------------------------------------------------------------------------------------


def test_register_adds_the_class_under_its_name() -> None:
    registry: dict[str, type] = {"DKNN": DKNN}
    register(registry, "TracIn", TracIn)
    assert registry == {"DKNN": DKNN, "TracIn": TracIn}


def test_register_refuses_a_duplicate_name_naming_it_and_keeps_the_first() -> None:
    registry: dict[str, type] = {"TracIn": TracIn}
    with pytest.raises(KeyError) as error:
        register(registry, "TracIn", DKNN)
    assert error.value.args == ("duplicate example method 'TracIn'",)
    assert registry == {"TracIn": TracIn}
