"""disVAE figures: one panel per loss term and per metric."""

from __future__ import annotations

import pandas as pd

from lfxai.plotting.disentanglement import close, loss_term_curves, metric_box_plots


def test_loss_term_curves_draw_train_and_test_per_term():
    history = pd.DataFrame(
        {
            "epoch": [0, 1],
            "train_loss": [3.0, 2.0],
            "test_loss": [3.5, 2.5],
            "train_kl": [1.0, 0.5],
            "test_kl": [1.1, 0.6],
            "test_tc": [0.2, 0.1],
        }
    )
    figure = loss_term_curves(history, "t")
    axes = figure.axes
    assert [ax.get_title() for ax in axes] == ["loss", "kl", "tc"]
    assert [len(ax.lines) for ax in axes] == [2, 2, 1]
    assert list(axes[0].lines[1].get_ydata()) == [3.5, 2.5]
    close(figure)


def test_metric_box_plots_have_a_box_per_beta_and_loss():
    table = pd.DataFrame(
        {
            "loss": ["a", "a", "a", "b", "b", "b"],
            "beta": [1, 1, 5, 1, 5, 5],
            "pearson": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            "entropy": [1.0, 1.1, 1.2, 0.9, 0.8, 0.7],
        }
    )
    figure = metric_box_plots(table, ["pearson", "entropy"])
    assert [ax.get_title() for ax in figure.axes] == ["pearson", "entropy"]
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["1", "5"]
    assert len(figure.axes[0].patches) == 4  # 2 betas x 2 losses
    close(figure)
