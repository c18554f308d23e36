"""The Set Transformer blocks against their definitions (Lee et al. 2019), head by head."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lfxai.models.set_transformer import ISAB, MAB, PMA, SetTransformer


def _mab_reference(mab: MAB, x: torch.Tensor, y: torch.Tensor, layer_norm: bool) -> torch.Tensor:
    """``LN(H + relu(rFF(H)))``, ``H = LN(Q + [softmax(Q_h K_h^T / sqrt(dim)) V_h]_h)``, one
    set and one head at a time. As in the authors' code, the scores are divided by the square
    root of the full width, not of a head's."""
    q, k, v = mab.q(x), mab.k(y), mab.v(y)
    dim, heads = q.shape[-1], mab.n_heads
    width = dim // heads
    out = torch.empty_like(q)
    for b in range(len(x)):
        for h in range(heads):
            cols = slice(h * width, (h + 1) * width)
            scores = q[b, :, cols] @ k[b, :, cols].T / math.sqrt(dim)
            out[b, :, cols] = torch.softmax(scores, dim=-1) @ v[b, :, cols]

    def norm(t: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(t, (dim,)) if layer_norm else t  # fresh LayerNorms: weight 1, bias 0

    h = norm(q + out)
    return norm(h + torch.relu(mab.ff(h)))


@pytest.mark.parametrize(("heads", "layer_norm"), [(1, True), (2, True), (4, False)])
def test_mab_is_multihead_attention_with_residual_feed_forward(heads, layer_norm):
    torch.manual_seed(0)
    mab = MAB(dim_q=3, dim_kv=5, dim=8, n_heads=heads, layer_norm=layer_norm)
    x, y = torch.randn(2, 4, 3), torch.randn(2, 6, 5)
    torch.testing.assert_close(mab(x, y), _mab_reference(mab, x, y, layer_norm))
    norms = (nn.LayerNorm, nn.LayerNorm) if layer_norm else (nn.Identity, nn.Identity)
    assert (type(mab.ln0), type(mab.ln1)) == norms


def test_mab_refuses_heads_that_do_not_divide_the_width():
    with pytest.raises(ValueError, match="dim=6 is not divisible by n_heads=4"):
        MAB(2, 2, 6, n_heads=4)


def test_isab_and_pma_wire_their_attention_blocks():
    """ISAB(X) = MAB1(X, MAB0(I, X)); PMA(X) = MAB(S, X), with learned I and S."""
    torch.manual_seed(1)
    x = torch.randn(3, 7, 5)
    isab = ISAB(dim_in=5, dim=8, n_inducing=4, n_heads=2)
    induced = isab.mab0(isab.inducing.expand(3, -1, -1), x)
    assert isab.inducing.shape == (1, 4, 8) and isab.inducing.abs().sum() > 0  # initialised
    torch.testing.assert_close(isab(x), isab.mab1(x, induced))
    pma = PMA(dim=5, n_seeds=2, n_heads=1)
    assert pma.seeds.shape == (1, 2, 5) and pma.seeds.abs().sum() > 0
    torch.testing.assert_close(pma(x), pma.mab(pma.seeds.expand(3, -1, -1), x))


def test_set_transformer_stacks_isabs_and_is_invariant_to_the_order_of_the_set():
    torch.manual_seed(2)
    model = SetTransformer(
        dim_in=5, n_outputs=3, dim_out=7, n_layers=2, dim_hidden=8, n_inducing=4, n_heads=2
    )
    widths = [(b.mab1.q.in_features, b.mab1.ff.out_features) for b in model.blocks]
    assert widths == [(5, 8), (8, 8)]
    assert len(model.pool.seeds[0]) == 3 and model.out.out_features == 7
    x = torch.randn(2, 6, 5)
    out = model(x)
    assert out.shape == (2, 3, 7)
    expected = model.out(model.pool(model.blocks[1](model.blocks[0](x))))
    torch.testing.assert_close(out, expected)
    shuffled = x[:, torch.randperm(6, generator=torch.Generator().manual_seed(0))]
    torch.testing.assert_close(model(shuffled), out, rtol=1e-5, atol=1e-5)
    # ... and each set is its own: changing one set leaves the other's outputs alone.
    other = x.clone()
    other[1] += 1
    torch.testing.assert_close(model(other)[0], out[0])
    assert not torch.allclose(model(other)[1], out[1])


def test_defaults_and_every_block_gets_the_heads_and_norms():
    """One head and layer norms by default (the SCAE's object encoder: 3 ISABs, 16 wide,
    32 inducing points); a Set Transformer passes its heads and norms to every block."""
    mab = MAB(2, 3, 4)
    assert mab.n_heads == 1 and isinstance(mab.ln0, nn.LayerNorm)
    isab, pma = ISAB(3, 4, n_inducing=2), PMA(4, n_seeds=2)
    for block in (isab.mab0, isab.mab1, pma.mab):
        assert block.n_heads == 1 and isinstance(block.ln1, nn.LayerNorm)
    default = SetTransformer(dim_in=5, n_outputs=2, dim_out=3)
    assert len(default.blocks) == 3 and default.blocks[0].inducing.shape == (1, 32, 16)
    assert default.pool.mab.n_heads == 1 and default.out.in_features == 16
    assert isinstance(default.pool.mab.ln0, nn.LayerNorm)
    custom = SetTransformer(
        5, 2, 3, n_layers=2, dim_hidden=8, n_inducing=4, n_heads=2, layer_norm=False
    )
    mabs = [m for m in custom.modules() if isinstance(m, MAB)]
    assert len(mabs) == 2 * 2 + 1
    assert all(m.n_heads == 2 and isinstance(m.ln0, nn.Identity) for m in mabs)
    assert all(isinstance(m.ln1, nn.Identity) for m in mabs)
