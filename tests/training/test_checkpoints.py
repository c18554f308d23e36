"""Checkpoints written by the training loop (TracIn's): where, when, named how, holding what."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lfxai.training import TrainingSettings, fit
from tests.training.helpers import Scripted, fit_one_batch, mnist_like, small_ae


@pytest.mark.parametrize("every", [1, 2])
def test_checkpoints_need_a_folder(every):
    with pytest.raises(ValueError) as error:
        fit_one_batch(Scripted([1.0]), 1, checkpoint_every=every)
    assert str(error.value) == "checkpoint_every > 0 needs a checkpoint_dir"


def test_checkpoint_files_are_named_by_model_and_epoch_in_a_new_folder(tmp_path):
    folder = tmp_path / "not" / "yet"  # created, parents included
    for name, prefix in ((None, "model"), ("net", "net")):  # a model without a name, and one
        model = Scripted([3.0, 2.0, 1.0])
        if name:
            model.name = name
        model.checkpoints_files = []
        result = fit_one_batch(model, 3, checkpoint_every=1, checkpoint_dir=folder / prefix)
        names = [f"{prefix}_checkpoint_{k}.pt" for k in (1, 2, 3)]
        assert result.checkpoints == [str(folder / prefix / name) for name in names]
        assert model.checkpoints_files == result.checkpoints
        assert sorted(p.name for p in (folder / prefix).iterdir()) == names


def test_checkpoints_are_written_after_every_kth_epoch(tmp_path):
    result = fit_one_batch(Scripted([1.0] * 7), 7, checkpoint_every=3, checkpoint_dir=tmp_path)
    assert [Path(p).name for p in result.checkpoints] == [
        "model_checkpoint_3.pt",
        "model_checkpoint_6.pt",
    ]


def test_checkpoints_hold_cpu_tensors(tmp_path, monkeypatch):
    # A CUDA run cannot be made here, so the state dict is spied on as torch.save sees it.
    saved = []
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f: (saved.append(obj), real_save(obj, f)))
    model = small_ae()
    settings = TrainingSettings(2, checkpoint_every=1)
    fit(
        model,
        mnist_like(32),
        mnist_like(16),
        torch.device("cpu"),
        settings,
        checkpoint_dir=tmp_path,
    )
    assert len(saved) == 2
    for state in saved:
        assert all(v.device.type == "cpu" and not v.requires_grad for v in state.values())
    loaded = torch.load(model.checkpoints_files[0], map_location=None, weights_only=True)
    assert all(v.device.type == "cpu" for v in loaded.values())
