"""The channels-last layout ``fit`` trains convolutions in on the CPU: same model, same losses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lfxai.data.splits import Split
from lfxai.devices import seed_everything
from lfxai.training import TrainingSettings, cpu_state_dict, fit
from tests.training.helpers import small_ae


def _splits() -> tuple[Split, Split]:
    x = torch.rand(96, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(96, dtype=torch.long)
    return Split(x[:64], y[:64]), Split(x[64:], y[64:])


def _is_channels_last(weight: torch.Tensor) -> bool:
    return not weight.is_contiguous() and weight.is_contiguous(memory_format=torch.channels_last)


def _train(channels_last: bool, tmp_path=None) -> tuple[nn.Module, list[float], list[str]]:
    seed_everything(0)
    model = small_ae()
    settings = TrainingSettings(
        3, 16, patience=0, checkpoint_every=1 if tmp_path else 0, channels_last=channels_last
    )
    seen = []  # the layout the convolutions ran in (weights where the two layouts differ)
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d) and min(module.weight.shape[:2]) > 1:
            module.register_forward_hook(lambda m, i, o: seen.append(_is_channels_last(m.weight)))
    result = fit(
        model, *_splits(), torch.device("cpu"), settings, checkpoint_dir=tmp_path, progress=False
    )
    assert seen and all(s == channels_last for s in seen)
    return model, result.test_loss, result.checkpoints


def test_both_layouts_train_the_same_model_up_to_float_rounding():
    default, default_losses, _ = _train(False)
    fast, fast_losses, _ = _train(True)
    torch.testing.assert_close(fast_losses, default_losses, rtol=1e-4, atol=1e-6)
    # Not the weights: a bias before a batch norm has no gradient but rounding noise, which
    # Adam scales to steps of size lr; the batch norm cancels it in what the model computes.
    x = _splits()[1].x
    with torch.no_grad():
        torch.testing.assert_close(fast.encoder(x), default.encoder(x), rtol=1e-3, atol=1e-4)


def test_the_model_and_its_checkpoints_come_back_in_the_default_layout(tmp_path):
    model, _, checkpoints = _train(True, tmp_path)
    assert len(checkpoints) == 3
    for name, value in model.state_dict().items():
        assert value.is_contiguous(), name
    for path in checkpoints:
        for name, value in torch.load(path, weights_only=True).items():
            assert value.is_contiguous(), (path, name)


def test_a_training_that_raises_leaves_the_model_in_the_default_layout():
    seed_everything(0)
    model = small_ae()

    def stop(epoch, losses):
        assert any(_is_channels_last(p) for p in model.parameters())  # it did train so
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        settings = TrainingSettings(3, 16)
        fit(model, *_splits(), torch.device("cpu"), settings, on_epoch=stop, progress=False)
    for name, value in model.state_dict().items():
        assert value.is_contiguous(), name


def test_a_model_without_convolutions_keeps_its_layout():
    seed_everything(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 4))
    model.loss = lambda x, y=None: model(x).pow(2).mean()
    weight = model[1].weight
    fit(model, *_splits(), torch.device("cpu"), TrainingSettings(1, 16), progress=False)
    assert model[1].weight is weight and weight.is_contiguous()


def test_cpu_state_dict_copies_are_contiguous():
    conv = nn.Conv2d(2, 3, 3).to(memory_format=torch.channels_last)
    state = cpu_state_dict(conv)
    assert state["weight"].is_contiguous()
    torch.testing.assert_close(state["weight"], conv.weight.detach(), rtol=0, atol=0)
