"""The ECG5000 LSTM autoencoder: the reference's defaults, sizes and what it keeps."""

from __future__ import annotations

import torch
from torch import nn

from lfxai.models.pretext import GaussianNoise, Identity
from lfxai.models.time_series import DecoderLSTM, EncoderLSTM, RecurrentAutoencoder


def test_defaults_are_a_64_unit_code_of_one_feature_per_step_named_model():
    model = RecurrentAutoencoder(seq_len=5)
    assert (model.latent_dim, model.encoder.embedding_dim, model.name) == (64, 64, "model")
    assert isinstance(model.input_pert, Identity)
    assert model.encoder.rnn1.input_size == 1 and model.decoder.output_layer.out_features == 1
    assert isinstance(model.loss_f, nn.L1Loss)


def test_settings_reach_encoder_decoder_and_the_model():
    noise = GaussianNoise(0.1)
    model = RecurrentAutoencoder(7, embedding_dim=3, n_features=2, input_pert=noise, name="ecg")
    assert (model.latent_dim, model.name, model.input_pert) == (3, "ecg", noise)
    x = torch.rand(4, 7, 2, generator=torch.Generator().manual_seed(0))
    model.eval()
    assert model.encoder(x).shape == (4, 3) and model(x).shape == (4, 7, 2)
    encoder, decoder = EncoderLSTM(2, 3), DecoderLSTM(7, 3, 2)
    assert encoder.embedding_dim == 3
    assert (encoder.rnn1.hidden_size, encoder.rnn2.hidden_size) == (6, 3)
    assert (decoder.rnn1.hidden_size, decoder.rnn2.hidden_size) == (3, 6)
    assert decoder.output_layer.in_features == 6 and decoder.output_layer.out_features == 2


def test_encoder_and_decoder_alone_default_to_one_feature_and_64_units():
    encoder, decoder = EncoderLSTM(), DecoderLSTM(5)
    assert (encoder.rnn1.input_size, encoder.rnn2.hidden_size) == (1, 64)
    assert (decoder.rnn1.input_size, decoder.output_layer.out_features) == (64, 1)
