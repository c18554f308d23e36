"""disVAE figures: one panel per loss term and per metric."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib import pyplot as plt

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


def test_loss_term_curves_plot_each_mode_against_the_epochs_and_skip_other_columns():
    history = pd.DataFrame(
        {
            "epoch": [2, 4, 6],
            "test_rec": [5.0, 4.0, 3.0],  # test first: train is still drawn first
            "train_rec": [6.0, 5.0, 4.0],
            "val_rec": [9.0, 9.0, 9.0],  # not a mode
            "train": [1.0, 1.0, 1.0],  # no term
            "lr": [0.1, 0.1, 0.1],
        }
    )
    figure = loss_term_curves(history)
    (ax,) = figure.axes
    assert ax.get_title() == "rec" and ax.get_xlabel() == "epoch"
    assert [line.get_label() for line in ax.lines] == ["train", "test"]
    assert [list(line.get_xdata()) for line in ax.lines] == [[2, 4, 6], [2, 4, 6]]
    assert list(ax.lines[0].get_ydata()) == [6.0, 5.0, 4.0]
    assert ax.lines[0].get_marker() == "o" and ax.get_legend() is not None
    assert figure.get_suptitle() == ""
    assert list(figure.get_size_inches()) == pytest.approx([2.8, 2.8])
    close(figure)


def test_loss_term_curves_put_the_legend_on_the_first_panel_and_the_title_above():
    history = pd.DataFrame({"epoch": [0], "train_a": [1.0], "train_b": [2.0]})
    figure = loss_term_curves(history, title="VAE")
    first, second = figure.axes
    assert first.get_legend() is not None and second.get_legend() is None
    assert figure.get_suptitle() == "VAE"
    assert list(figure.get_size_inches()) == pytest.approx([5.6, 2.8])
    close(figure)


def _box_extents(ax) -> list[tuple[float, float, float, float]]:
    """(x0, x1, y0, y1) of each box, rounded, in drawing order."""
    boxes = []
    for patch in ax.patches:
        box = patch.get_path().get_extents()
        boxes.append(tuple(round(v, 6) for v in (box.x0, box.x1, box.y0, box.y1)))
    return boxes


def test_metric_box_plots_place_losses_side_by_side_at_sorted_betas_without_nans():
    table = pd.DataFrame(
        {
            "loss": ["b", "b", "a", "a", "b", "a"],
            "beta": [10, 10, 10, 1, 1, 1],
            "m": [0.1, 0.3, 0.5, 0.7, float("nan"), 0.9],
        }
    )
    figure = metric_box_plots(table, ["m"], title="disVAE")
    (ax,) = figure.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "10"]
    assert list(ax.get_xticks()) == [0, 1] and ax.get_xlabel() == "beta"
    # Two losses: width 0.4, boxes 0.36 wide at -0.2 / +0.2 around each beta; "b" first (the
    # order of first appearance). b at beta 1 has only NaN: an empty box, nothing drawn.
    x0, x1, y0, y1 = _box_extents(ax)[1]  # b at beta 10: 0.1 and 0.3, quartiles 0.15 and 0.25
    assert (x0, x1) == pytest.approx((1 - 0.2 - 0.18, 1 - 0.2 + 0.18))
    assert (y0, y1) == pytest.approx((0.15, 0.25))
    a_boxes = _box_extents(ax)[2:]  # a at beta 1 (0.7, 0.9) and beta 10 (0.5)
    assert a_boxes[0][:2] == pytest.approx((0.2 - 0.18, 0.2 + 0.18))
    assert a_boxes[0][2:] == pytest.approx((0.75, 0.85))
    assert a_boxes[1] == pytest.approx((1.02, 1.38, 0.5, 0.5))
    colours = [patch.get_facecolor() for patch in ax.patches]
    assert colours[0] == colours[1] != colours[2] == colours[3]
    assert all(patch.get_alpha() == 0.6 for patch in ax.patches)
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["b", "a"]
    assert figure.get_suptitle() == "disVAE"
    close(figure)
    assert not plt.fignum_exists(figure.number)


def test_metric_box_plots_one_loss_is_centred_on_its_beta_with_the_legend_on_panel_one():
    table = pd.DataFrame({"loss": ["a", "a"], "beta": [0.5, 0.5], "m": [1.0, 3.0], "n": [1, 2]})
    figure = metric_box_plots(table, ["m", "n"])
    first, second = figure.axes
    ((x0, x1, y0, y1),) = _box_extents(first)
    assert (x0, x1, y0, y1) == pytest.approx((-0.36, 0.36, 1.5, 2.5))
    assert [t.get_text() for t in first.get_xticklabels()] == ["0.5"]
    assert first.get_legend() is not None and second.get_legend() is None
    assert list(figure.get_size_inches()) == pytest.approx([6.4, 3.2])
    assert figure.get_suptitle() == ""
    close(figure)


def test_a_term_keeps_its_underscores_and_panels_use_small_type_marks_and_a_light_grid():
    history = pd.DataFrame({"epoch": [0, 1], "train_kl_mc": [1.0, 0.5], "test_kl_mc": [1.1, 0.6]})
    figure = loss_term_curves(history)
    (ax,) = figure.axes
    assert ax.get_title() == "kl_mc" and len(ax.lines) == 2  # the mode is the first word
    assert ax.title.get_fontsize() == 9
    assert {line.get_markersize() for line in ax.lines} == {3}
    assert all(line.get_alpha() == 0.3 for line in ax.get_xgridlines())
    assert [t.get_fontsize() for t in ax.get_legend().get_texts()] == [8, 8]
    close(figure)


def test_box_plot_legends_show_each_losss_colour_as_a_square_and_panels_a_light_y_grid():
    table = pd.DataFrame({"loss": ["a", "b"], "beta": [1, 1], "m": [0.1, 0.2]})
    figure = metric_box_plots(table, ["m"])
    (ax,) = figure.axes
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    squares = [line for line in ax.get_lines() if line.get_label() in ("a", "b")]
    assert [(s.get_marker(), s.get_color()) for s in squares] == [
        ("s", colours[0]),
        ("s", colours[1]),
    ]
    assert ax.title.get_fontsize() == 9
    assert [t.get_fontsize() for t in ax.get_legend().get_texts()] == [8, 8]
    assert all(line.get_alpha() == 0.3 for line in ax.get_ygridlines())
    assert not any(line.get_visible() for line in ax.get_xgridlines())
    close(figure)


def test_close_releases_the_given_figure_not_the_current_one():
    figure = loss_term_curves(pd.DataFrame({"epoch": [0], "train_a": [1.0]}))
    current = plt.figure()
    close(figure)
    assert not plt.fignum_exists(figure.number) and plt.fignum_exists(current.number)
    plt.close(current)
