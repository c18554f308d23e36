"""Set Transformer blocks (multi-head attention over sets), as the SCAE's object encoder uses.

Every block maps a batch of sets ``(B, N, d_in)`` to ``(B, M, d_out)`` with no loop over sets
or elements; the heads are split off the feature axis.

References:
    Lee et al., "Set Transformer: A Framework for Attention-based Permutation-Invariant
    Neural Networks", ICML 2019.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MAB(nn.Module):
    """Multihead attention block ``MAB(X, Y) = LN(H + rFF(H))``, ``H = LN(X + Att(X, Y, Y))``.

    Args:
        dim_q: features of the queries ``X``.
        dim_kv: features of the keys / values ``Y``.
        dim: output features (the queries are projected to it for the residual).
        n_heads: attention heads (``dim`` must be divisible by it).
        layer_norm: apply the two layer norms.
    """

    def __init__(
        self, dim_q: int, dim_kv: int, dim: int, n_heads: int = 1, layer_norm: bool = True
    ) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim={dim} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.q, self.k, self.v = (
            nn.Linear(dim_q, dim),
            nn.Linear(dim_kv, dim),
            nn.Linear(dim_kv, dim),
        )
        self.ff = nn.Linear(dim, dim)
        self.ln0 = nn.LayerNorm(dim) if layer_norm else nn.Identity()
        self.ln1 = nn.LayerNorm(dim) if layer_norm else nn.Identity()

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, d = t.shape
        return t.view(b, n, self.n_heads, d // self.n_heads).transpose(1, 2)  # (B, h, n, d/h)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each of ``x``'s elements attended over ``y``'s, with a residual feed-forward."""
        q = self.q(x)
        qh, kh, vh = self._heads(q), self._heads(self.k(y)), self._heads(self.v(y))
        weights = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        attended = (weights @ vh).transpose(1, 2).reshape(q.shape)
        h = self.ln0(q + attended)
        return self.ln1(h + torch.relu(self.ff(h)))


class ISAB(nn.Module):
    """Induced set attention block: ``MAB(X, MAB(I, X))`` with ``m`` learned inducing points.

    Costs ``O(N m)`` instead of ``O(N^2)`` attention.

    Args:
        dim_in: features of the set elements.
        dim: output features.
        n_inducing: inducing points ``m``.
        n_heads: attention heads.
        layer_norm: use layer norms in both MABs.
    """

    def __init__(
        self, dim_in: int, dim: int, n_inducing: int, n_heads: int = 1, layer_norm: bool = True
    ) -> None:
        super().__init__()
        self.inducing = nn.Parameter(torch.empty(1, n_inducing, dim))
        nn.init.xavier_uniform_(self.inducing)
        self.mab0 = MAB(dim, dim_in, dim, n_heads, layer_norm)
        self.mab1 = MAB(dim_in, dim, dim, n_heads, layer_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The set ``x`` ``(N, n, d)`` through its inducing points (``(N, n, d_out)``)."""
        h = self.mab0(self.inducing.expand(len(x), -1, -1), x)
        return self.mab1(x, h)


class PMA(nn.Module):
    """Pooling by multihead attention: ``k`` learned seeds attend to the set -> ``(B, k, dim)``."""

    def __init__(self, dim: int, n_seeds: int, n_heads: int = 1, layer_norm: bool = True) -> None:
        super().__init__()
        self.seeds = nn.Parameter(torch.empty(1, n_seeds, dim))
        nn.init.xavier_uniform_(self.seeds)
        self.mab = MAB(dim, dim, dim, n_heads, layer_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The set ``x`` pooled into ``(N, n_seeds, d)`` by attention from learned seeds."""
        return self.mab(self.seeds.expand(len(x), -1, -1), x)


class SetTransformer(nn.Module):
    """Stacked ISABs, then PMA pooling into ``n_outputs`` vectors of size ``dim_out``.

    Args:
        dim_in: features of the set elements.
        n_outputs: vectors produced per set (e.g. object capsules).
        dim_out: features of each output vector.
        n_layers: stacked ISABs.
        dim_hidden: features inside the blocks.
        n_inducing: inducing points of each ISAB.
        n_heads: attention heads.
        layer_norm: use layer norms.
    """

    def __init__(
        self,
        dim_in: int,
        n_outputs: int,
        dim_out: int,
        n_layers: int = 3,
        dim_hidden: int = 16,
        n_inducing: int = 32,
        n_heads: int = 1,
        layer_norm: bool = True,
    ) -> None:
        super().__init__()
        dims = [dim_in] + [dim_hidden] * n_layers
        self.blocks = nn.Sequential(
            *(
                ISAB(a, b, n_inducing, n_heads, layer_norm)
                for a, b in zip(dims, dims[1:], strict=False)
            )
        )
        self.pool = PMA(dim_hidden, n_outputs, n_heads, layer_norm)
        self.out = nn.Linear(dim_hidden, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The stacked blocks, pooled, then projected: ``(N, n_outputs, d_out)``."""
        return self.out(self.pool(self.blocks(x)))
