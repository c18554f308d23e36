"""The sweep's Pareto figure: trials by loss and beta, the front as a step line and rings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib import pyplot as plt
from matplotlib.colors import to_rgba
from matplotlib.markers import MarkerStyle

from lfxai.plotting.sweep import LABELS, MARKERS, pareto_figure


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _trials(**columns) -> pd.DataFrame:
    base = {
        "pearson": [0.4, 0.1, 0.3, 0.2],
        "test_reconstruction": [20.0, 40.0, 30.0, 35.0],
        "beta": [1.0, 10.0, 100.0, 10.0],
        "loss": ["beta_vae", "beta_vae", "beta_tc_vae", "beta_tc_vae"],
        "pareto": [True, True, False, False],
    }
    return pd.DataFrame({**base, **columns})


def test_each_loss_is_one_marker_in_sorted_order_coloured_by_beta_on_a_log_scale():
    figure = pareto_figure(_trials(), "pearson", "test_reconstruction")
    ax = figure.axes[0]
    tc, vae = ax.collections[:2]  # groups sorted: beta_tc_vae, beta_vae
    assert (tc.get_label(), vae.get_label()) == ("beta_tc_vae", "beta_vae")
    np.testing.assert_array_equal(tc.get_offsets(), [[0.3, 30.0], [0.2, 35.0]])
    np.testing.assert_array_equal(vae.get_offsets(), [[0.4, 20.0], [0.1, 40.0]])
    np.testing.assert_array_equal(tc.get_array(), [100.0, 10.0])
    assert tc.norm is vae.norm and (tc.norm.vmin, tc.norm.vmax) == (1.0, 100.0)
    assert tc.norm(10.0) == pytest.approx(0.5)  # log scale: 10 halfway between 1 and 100
    assert tc.get_cmap().name == "viridis" and list(tc.get_sizes()) == [36]
    marker_paths = [c.get_paths()[0].vertices.round(3).tolist() for c in (tc, vae)]
    styles = [MarkerStyle(m) for m in MARKERS[:2]]
    expected = [
        st.get_path().transformed(st.get_transform()).vertices.round(3).tolist() for st in styles
    ]
    assert marker_paths == expected and MARKERS[:2] == ("o", "s")
    (colorbar_axis,) = [a for a in figure.axes if a is not ax]
    assert colorbar_axis.get_ylabel() == "beta"
    assert (ax.get_xlabel(), ax.get_ylabel()) == (
        LABELS["pearson"],
        LABELS["test_reconstruction"],
    )
    assert all(line.get_alpha() == 0.3 for line in ax.get_xgridlines())
    assert list(figure.get_size_inches()) == pytest.approx([6, 4.5])


def test_the_front_is_a_crimson_step_line_in_x_order_with_a_ring_per_trial():
    trials = _trials(pareto=[True, True, False, True])
    figure = pareto_figure(trials, "pearson", "test_reconstruction", title="sweep")
    ax = figure.axes[0]
    (line,) = ax.get_lines()
    assert line.get_label() == "Pareto front" and line.get_drawstyle() == "steps-post"
    assert line.get_xdata().tolist() == [0.1, 0.2, 0.4]  # sorted by the first objective
    assert line.get_ydata().tolist() == [40.0, 35.0, 20.0]
    assert to_rgba(line.get_color()) == to_rgba("crimson") and line.get_linewidth() == 1.2
    rings = ax.collections[2]
    np.testing.assert_array_equal(rings.get_offsets(), [[0.1, 40.0], [0.2, 35.0], [0.4, 20.0]])
    assert list(rings.get_sizes()) == [110] and len(rings.get_facecolors()) == 0
    np.testing.assert_allclose(rings.get_edgecolors(), [to_rgba("crimson")])
    assert ax.get_title() == "sweep"


def test_the_legend_names_losses_in_grey_and_the_front_in_crimson():
    figure = pareto_figure(_trials(), "pearson", "test_reconstruction")
    legend = figure.axes[0].get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == ["beta_tc_vae", "beta_vae", "Pareto front"]
    assert all(t.get_fontsize() == 8 for t in legend.get_texts())
    *losses, front = legend.legend_handles
    assert to_rgba(front.get_color()) == to_rgba("crimson")
    for handle in losses:
        np.testing.assert_allclose(handle.get_facecolor(), [to_rgba("gray")])


def test_no_front_draws_no_line_and_one_beta_still_has_a_colour_scale():
    trials = _trials(pareto=[False] * 4, beta=[4.0] * 4)
    trials["spread"] = [1.0, 2.0, 3.0, 4.0]
    figure = pareto_figure(trials, "pearson", "spread")
    ax = figure.axes[0]
    assert ax.get_lines() == [] and len(ax.collections) == 2
    assert ax.collections[0].norm.vmin == 4.0
    assert ax.collections[0].norm.vmax == pytest.approx(4.004)
    assert ax.get_ylabel() == "spread" and ax.get_title() == ""
    assert not [t for t in ax.texts if t.get_text() == "no finite values"]


def test_trials_without_a_finite_value_say_so():
    trials = _trials(pearson=[np.nan] * 4, test_reconstruction=[np.inf] * 4)
    ax = pareto_figure(trials, "pearson", "test_reconstruction").axes[0]
    (text,) = ax.texts
    assert text.get_text() == "no finite values" and text.get_position() == (0.5, 0.5)
    assert text.get_ha() == "center" and text.get_transform() == ax.transAxes


def test_points_have_no_edges_rings_a_thin_line_and_the_colour_bar_follows_the_points():
    trials = _trials().rename(columns={"pearson": "spread"})
    figure = pareto_figure(trials, "spread", "test_reconstruction")
    ax = figure.axes[0]
    tc, vae, rings = ax.collections
    assert len(tc.get_edgecolors()) == len(vae.get_edgecolors()) == 0
    assert list(rings.get_linewidths()) == [1.2]
    assert vae.colorbar is not None and vae.colorbar.ax is figure.axes[1]
    assert ax.get_xlabel() == "spread"  # no long label for it: its own name


def test_an_empty_study_draws_empty_axes_without_a_colour_bar():
    empty = pd.DataFrame({c: [] for c in ("pearson", "test_reconstruction", "beta", "loss")})
    empty["pareto"] = pd.Series([], dtype=bool)
    figure = pareto_figure(empty, "pearson", "test_reconstruction")
    assert len(figure.axes) == 1 and len(figure.axes[0].collections) == 0
