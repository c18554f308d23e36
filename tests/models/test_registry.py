"""The model registry and the loss protocol every model follows."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from lfxai.models.registry import (
    MODELS,
    ModelRecipe,
    ModelSpec,
    TrainingDefaults,
    build_model,
    register_model,
    training_defaults,
)
from lfxai.models.time_series import RecurrentAutoencoder

SHAPES = {"mnist_ae": (1, 28, 28), "mnist_classifier": (1, 28, 28), "lstm_ae": (12, 1)}
SHAPES["mnist_scae"] = (1, 28, 28)
SHAPES["simclr_resnet18"] = (3, 32, 32)
SHAPES["burgess_vae"] = (1, 32, 32)
# Fixed representation sizes: dim_latent does not apply to these; others take any latent size.
CODE_SIZES = {"mnist_scae": 24 * 144, "simclr_resnet18": 512}
DIMS = {"simclr_resnet18": 512}  # the latent size the builder requires
# Objectives with batch-level terms: the SCAE's sparsity losses, contrastive losses (each
# view's negatives are the others'). A batch's loss is not the mean of its examples' losses;
# the explainers then differentiate a batch of one (SCAE) or only use representations (SimCLR).
BATCH_LEVEL = {"mnist_scae", "simclr_resnet18"}
# Objectives that sample (a VAE's z ~ q(z|x)): one batch and its examples one at a time draw
# different noise, so their losses are not comparable draw for draw.
SAMPLED = {"burgess_vae"}


@pytest.mark.parametrize("key", sorted(MODELS))
def test_every_model_builds_and_its_loss_is_the_batch_mean_of_example_losses(key) -> None:
    """The protocol the explainers rely on: mean over examples of each example's own loss."""
    assert key in SHAPES, f"add an input shape for the new model {key!r}"
    torch.manual_seed(0)
    dim = DIMS.get(key, 3)
    model = build_model(key, ModelSpec(dim, SHAPES[key], "reconstruction", "m")).eval()
    x = torch.rand(5, *SHAPES[key])
    y = torch.randint(0, 10, (5,))
    codes = model.encoder(x)
    assert codes.shape == (5, CODE_SIZES.get(key, dim))
    batch = model.loss(x, y)
    assert model.recipe == ModelRecipe(key, ModelSpec(dim, SHAPES[key], "reconstruction", "m"))
    if key in BATCH_LEVEL | SAMPLED:
        assert batch.shape == () and torch.isfinite(batch)
        return
    each = torch.stack([model.loss(x[i : i + 1], y[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(batch, each.mean(), rtol=1e-5, atol=1e-7)


def test_unknown_model_and_wrong_shape_name_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'vae'.*lstm_ae"):
        build_model("vae", ModelSpec(3, (1, 28, 28)))
    with pytest.raises(ValueError, match=r"'mnist_ae' takes inputs of shape \(1, 28, 28\)"):
        build_model("mnist_ae", ModelSpec(3, (140, 1)))
    with pytest.raises(KeyError, match="twice"):
        register_model("lstm_ae")(lambda spec: None)


def test_lstm_autoencoder_follows_the_paper_architecture() -> None:
    model = RecurrentAutoencoder(seq_len=140, embedding_dim=16)
    enc, dec = model.encoder, model.decoder
    assert (enc.rnn1.input_size, enc.rnn1.hidden_size) == (1, 32)  # 1 -> 2d
    assert (enc.rnn2.input_size, enc.rnn2.hidden_size) == (32, 16)  # 2d -> d
    assert (dec.rnn1.input_size, dec.rnn1.hidden_size) == (16, 16)  # d -> d
    assert (dec.rnn2.input_size, dec.rnn2.hidden_size) == (16, 32)  # d -> 2d
    assert (dec.output_layer.in_features, dec.output_layer.out_features) == (32, 1)
    assert isinstance(model.loss_f, nn.L1Loss)
    x = torch.randn(3, 140, 1)
    assert model(x).shape == x.shape
    # The code is the last hidden state of the second encoder LSTM.
    out, _ = enc.rnn2(enc.rnn1(x)[0])
    torch.testing.assert_close(enc(x), out[:, -1], rtol=0, atol=0)
    # The decoder sees the same code at every step: a constant code gives the same output
    # whatever the input was, so reconstruction depends on x only through the code.
    torch.testing.assert_close(dec(enc(x)), model.eval()(x), rtol=0, atol=0)


def test_a_model_s_options_shape_its_training_not_its_recipe() -> None:
    spec = ModelSpec(3, (1, 32, 32), name="trial")
    vae = build_model("burgess_vae", spec, loss="beta_tc_vae", beta=5.0, dataset_size=600)
    assert (vae.loss_name, vae.beta, vae.dataset_size) == ("beta_tc_vae", 5.0, 600)
    assert vae.recipe == ModelRecipe("burgess_vae", spec)  # rebuilds the same networks
    plain = build_model("burgess_vae", spec)
    assert (plain.loss_name, plain.beta) == ("beta_vae", 1.0)
    shapes = {k: v.shape for k, v in vae.state_dict().items()}
    assert shapes == {k: v.shape for k, v in plain.state_dict().items()}
    with pytest.raises(TypeError, match="depth"):
        build_model("mnist_ae", ModelSpec(3, (1, 28, 28)), depth=2)  # options are the builder's


def test_the_scae_carries_the_paper_s_training_and_other_models_none() -> None:
    scae = training_defaults("mnist_scae")
    assert scae == TrainingDefaults("rmsprop", 1e-5, 0.0, 128, 30, 10)
    assert all(training_defaults(k) is None for k in MODELS if k != "mnist_scae")

    @dataclass(frozen=True)
    class Settings:  # an experiment's training settings, and one of its own
        optimizer: str = "adam"
        lr: float = 1e-3
        weight_decay: float = 1e-5
        batch_size: int = 300
        n_epochs: int = 100
        patience: int = 5
        seed: int = 7

    assert scae.apply(Settings()) == Settings("rmsprop", 1e-5, 0.0, 128, 30, 10, seed=7)
    with pytest.raises(ValueError, match=r"unknown model 'vae'"):
        training_defaults("vae")


def test_registering_stores_the_builder_with_its_training(monkeypatch) -> None:
    from lfxai.models import registry

    monkeypatch.setattr(registry, "MODELS", dict(MODELS))  # registrations here stay here
    training = TrainingDefaults("adam", 1e-3, 0.0, 8, 2, 1)

    def builder(spec: ModelSpec) -> nn.Module:
        return registry.MODELS["mnist_ae"].build(spec)

    assert register_model("test_only", training=training)(builder) is builder
    assert register_model("test_plain")(builder) is builder
    assert registry.MODELS["test_only"] == registry.ModelEntry(builder, training)
    assert registry.MODELS["test_plain"] == registry.ModelEntry(builder, None)
    assert registry.training_defaults("test_only") is training
    model = registry.build_model("test_only", ModelSpec(2, (1, 28, 28)))
    assert model.recipe == ModelRecipe("test_only", ModelSpec(2, (1, 28, 28)))
    with pytest.raises(KeyError, match="model 'test_only' is registered twice"):
        register_model("test_only")(builder)
    assert "test_only" not in MODELS
