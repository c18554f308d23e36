"""A torch.export graph used as an encoder: train()/eval() no longer raise, nothing else changes."""

from __future__ import annotations

import pytest
import torch

from lfxai.models.exported import ExportedEncoder


def test_mode_switches_touch_only_the_wrapper(tiny_encoder) -> None:
    x = torch.rand(4, 1, 8, 8)
    dim = torch.export.Dim("batch")
    graph = torch.export.export(tiny_encoder, (x,), dynamic_shapes=({0: dim},)).module()
    with pytest.raises(NotImplementedError):
        graph.eval()  # why the wrapper exists
    encoder = ExportedEncoder(graph)
    assert encoder.train() is encoder and encoder.training
    assert encoder.eval() is encoder and not encoder.training
    assert list(encoder.parameters()) == list(graph.parameters())
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), tiny_encoder(x))
