"""load_state_strict names every kind of mismatch, five items of each at most."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from lfxai.models.autoencoder import TrainableModel, load_state_strict


class _Many(nn.Module):
    def __init__(self, count: int, size: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(size, size, bias=False) for _ in range(count))


def test_a_fitting_state_loads():
    source, target = _Many(2), _Many(2)
    load_state_strict(target, source.state_dict(), "models:/m/1")
    assert torch.equal(target.layers[1].weight, source.layers[1].weight)


def test_each_kind_of_mismatch_is_listed_five_at_a_time():
    target = _Many(6)
    state = {f"extra.{i}": torch.zeros(1) for i in range(5)}  # five: no ellipsis
    state |= {f"layers.{i}.weight": torch.zeros(3, 3) for i in range(6)}  # six: cut at five
    del state["layers.5.weight"]  # one missing
    shapes = [f"layers.{i}.weight (3, 3) (expected (2, 2))" for i in range(5)]
    unexpected = [f"extra.{i}" for i in range(5)]
    message = (
        "the state from run abc does not fit _Many: missing keys ['layers.5.weight']; "
        f"unexpected keys {unexpected}; shapes differ: {shapes}"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        load_state_strict(target, state, "run abc")
    state["layers.5.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=re.escape(f"shapes differ: {shapes} ...")):
        load_state_strict(target, state, "run abc")


def test_a_new_model_has_no_checkpoints_and_no_learning_rate_yet():
    model = TrainableModel()
    assert model.checkpoints_files == [] and model.lr is None and model.name == "model"
    assert isinstance(model.loss_f, nn.MSELoss)
