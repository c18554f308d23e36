"""Recurrent autoencoder for univariate time series (ECG5000 heartbeats).

Architecture of the paper's ECG5000 experiments (after Valkov's LSTM autoencoder): the encoder
stacks two LSTMs, 1 -> 2d -> d, and its last hidden state is the code; the decoder repeats the
code over every time step, stacks two LSTMs, d -> d -> 2d, and maps each step to one value.
Inputs are batch-first ``(N, T, 1)``.
"""

from __future__ import annotations

import torch
from torch import nn

from lfxai.models.autoencoder import AutoEncoder


class EncoderLSTM(nn.Module):
    """Maps sequences ``(N, T, n_features)`` to codes ``(N, embedding_dim)``.

    Args:
        n_features: values per time step.
        embedding_dim: code dimension d (the first LSTM has 2d units).
    """

    def __init__(self, n_features: int = 1, embedding_dim: int = 64) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.rnn1 = nn.LSTM(n_features, 2 * embedding_dim, batch_first=True)
        self.rnn2 = nn.LSTM(2 * embedding_dim, embedding_dim, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The code ``(N, d)`` of sequences ``(N, T, n_features)``: the last hidden state."""
        x, _ = self.rnn1(x)
        _, (hidden, _) = self.rnn2(x)
        return hidden[-1]


class DecoderLSTM(nn.Module):
    """Maps codes ``(N, d)`` to sequences ``(N, seq_len, n_features)``.

    Args:
        seq_len: number of time steps T to generate.
        embedding_dim: code dimension d.
        n_features: values per time step.
    """

    def __init__(self, seq_len: int, embedding_dim: int = 64, n_features: int = 1) -> None:
        super().__init__()
        self.seq_len = seq_len
        self.rnn1 = nn.LSTM(embedding_dim, embedding_dim, batch_first=True)
        self.rnn2 = nn.LSTM(embedding_dim, 2 * embedding_dim, batch_first=True)
        self.output_layer = nn.Linear(2 * embedding_dim, n_features)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Sequences ``(N, T, n_features)`` decoded from codes ``(N, d)``."""
        x = z.unsqueeze(1).expand(-1, self.seq_len, -1)  # the code at every time step
        x, _ = self.rnn1(x)
        x, _ = self.rnn2(x)
        return self.output_layer(x)


class RecurrentAutoencoder(AutoEncoder):
    """LSTM autoencoder with an L1 reconstruction loss (the paper's ECG5000 model).

    Args:
        seq_len: sequence length T.
        embedding_dim: code dimension d.
        n_features: values per time step.
        input_pert: pretext perturbation applied while training.
        name: a short identifier.
    """

    def __init__(
        self,
        seq_len: int,
        embedding_dim: int = 64,
        n_features: int = 1,
        input_pert: nn.Module | None = None,
        name: str = "model",
    ) -> None:
        super().__init__(
            EncoderLSTM(n_features, embedding_dim),
            DecoderLSTM(seq_len, embedding_dim, n_features),
            latent_dim=embedding_dim,
            input_pert=input_pert,
            name=name,
            loss_f=nn.L1Loss(),
        )
