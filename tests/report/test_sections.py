"""Each experiment's report section from tables in memory: its numbers, notes and figures."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PolyCollection

from lfxai.plotting.reference import OURS, reference_comparison
from lfxai.report import reference, sections
from lfxai.report.document import Paragraph, Table
from lfxai.report.reference import Published
from lfxai.report.results import RunResult
from lfxai.tracking import RunRecord

matplotlib.use("Agg")


def _result(
    table: pd.DataFrame | None, params: dict[str, str] | None = None, **evidence
) -> RunResult:
    run = RunRecord("r", "mnist-x", "1", "FINISHED", 0, 1, {}, params or {}, {})
    return RunResult(run, table, dict(evidence))


def _curves(shift: float) -> pd.DataFrame:
    """A consistency_features table: Saliency at k = 10 and 50, Random at 10 only."""
    rows = [("Saliency", 10, 1.0 + shift), ("Saliency", 50, 2.0 + shift), ("Random", 10, 0.5)]
    return pd.DataFrame(rows, columns=["method", "pct_perturbed", "representation_shift"])


def test_a_curve_table_shows_the_mean_and_std_over_runs_and_a_dash_where_none_ran() -> None:
    section = sections.consistency_features("mnist", [_result(_curves(0.0)), _result(_curves(1.0))])
    note, table = section.blocks
    assert note == Paragraph(
        "Representation shift (mean squared L2 distance between the codes before and after "
        "perturbing the top k% pixels), the mean (± std) over 2 runs of the same settings."
    )
    assert table == Table(
        ["method", "k = 10%", "k = 50%"],
        [["Saliency", "1.5 ± 0.71", "2.5 ± 0.71"], ["Random", "0.5 ± 0", "-"]],
    )
    ((name, figure, caption),) = section.figures
    assert (name, caption) == (
        "shift",
        "MNIST: representation shift against the % of pixels perturbed",
    )
    (axes,) = figure.axes
    assert axes.get_title() == "MNIST: feature importance consistency"
    assert axes.get_xlabel() == "% pixels perturbed"
    # The curves are the means over the runs.
    lines = {line.get_label(): line for line in axes.get_lines()}
    np.testing.assert_allclose(lines["Saliency"].get_ydata(), [1.5, 2.5])
    one = sections.consistency_features("mnist", [_result(_curves(0.0))])
    assert one.blocks[0].text.endswith("perturbing the top k% pixels), one run.")
    assert one.blocks[1].rows[0] == ["Saliency", "1", "2"]  # one run: no std


def test_the_example_and_roar_sections_tabulate_their_own_curves() -> None:
    rates = pd.DataFrame(
        [("DKNN", "top", 5, 0.9), ("DKNN", "bottom", 5, 0.1), ("DKNN", "top", 50, 0.4)],
        columns=["method", "type", "pct_examples", "similarity_rate"],
    )
    section = sections.consistency_examples("ecg5000", [_result(rates)])
    assert section.blocks[1] == Table(
        ["method", "type", "k = 5%", "k = 50%"],
        [["DKNN", "top", "0.9", "0.4"], ["DKNN", "bottom", "0.1", "-"]],
    )
    assert section.blocks[0].text.startswith("Similarity rate: how often the top (bottom) k%")
    name, figure, caption = section.figures[0]
    assert name == "similarity" and caption.startswith("ECG5000: similarity rate")
    assert figure.axes[0].get_title() == "ECG5000: example importance consistency"

    losses = pd.DataFrame(
        [("Saliency", 0, 0.02), ("Saliency", 50, 0.05), ("Random", 0, 0.02)],
        columns=["method", "pct_removed", "test_loss"],
    )
    section = sections.roar_test("mnist", [_result(losses), _result(losses)])
    assert section.blocks[1].header == ["method", "k = 0%", "k = 50%"]
    assert section.blocks[1].rows == [
        ["Saliency", "0.02 ± 0", "0.05 ± 0"],
        ["Random", "0.02 ± 0", "-"],
    ]
    assert section.blocks[0].text == (
        "Test loss after retraining without the top k% training pixels (k = 0: the base model), "
        "the mean (± std) over 2 runs of the same settings."
    )
    name, figure, caption = section.figures[0]
    assert (name, figure.axes[0].get_xlabel()) == ("roar", "% training pixels removed")
    assert caption == "MNIST: test loss after retraining without the top k% pixels"


def _pretext(n_runs: int, value: float) -> dict[str, np.ndarray]:
    """Correlation matrices of reconstruction, denoising, scae: ``value`` off the diagonal."""
    matrix = np.full((3, 3), value) + (1 - value) * np.eye(3)
    return {
        "features_pearson": np.stack([matrix] * n_runs),
        "examples_pearson": np.stack([matrix * 0.5] * n_runs),
    }


PRETEXT_TABLE = pd.DataFrame(
    {"task_a": ["reconstruction", "denoising", "scae"], "task_b": ["denoising"] * 3}
)


def test_pretext_puts_each_task_pair_beside_the_published_values() -> None:
    result = _result(
        PRETEXT_TABLE, {"config.feature_attr_method": "GradientShap"}, **_pretext(2, 0.4)
    )
    section = sections.pretext("mnist", [result])
    note, table = section.blocks[:2]
    assert note.text == (
        "**Pearson correlation of saliency between pretext tasks** (ours: mean ± std over 2 runs)."
    )
    # Only the pairs both runs have: reconstruction-denoising (the scae pairs are examples').
    assert table.header == [
        "quantity",
        "ours (Pearson r)",
        "published (mean ± std)",
        "their spread",
        "inside?",
    ]
    assert table.rows == [
        [
            "Reconstruction-Denoising",
            "0.4 ± 0",
            "0.41 ± 0.02 [R1]; 0.38 ± 0.02 [R2]; 0.41 ± 0.02 [R4]",
            "0.36 to 0.43",
            "yes",
        ]
    ]
    example_note, example_table = section.blocks[2:4]
    assert example_note.text.startswith("**Pearson correlation of example importance")
    assert [row[0] for row in example_table.rows] == [
        "Reconstruction-Denoising",
        "SCAE-Reconstruction",
        "SCAE-Denoising",
    ]
    scae = example_table.rows[1]
    assert scae[1:] == ["0.2 ± 0", "0.08 [R3]", "-", "-"]  # one bare value: no spread
    # The spread is the union of the published mean ± std: 0.2 lies above its 0.04 to 0.18.
    assert example_table.rows[0][1:] == [
        "0.2 ± 0",
        "0.09 ± 0.02 [R1]; 0.08 ± 0.04 [R2]; 0.1 ± 0.02 [R4]; 0.12 ± 0.06 [R3]",
        "0.04 to 0.18",
        "no",
    ]
    names = [name for name, _, _ in section.figures]
    assert names == [
        "correlations",
        "features_pearson_vs_published",
        "examples_pearson_vs_published",
    ]
    notes = [b.text for b in section.blocks[4:]]
    assert notes[0].startswith("Feature-map Spearman is about 0.99") and len(notes) == 3
    assert all(b.css == "note" for b in section.blocks[4:])


def test_pretext_with_another_method_than_the_published_is_shown_but_not_judged() -> None:
    result = _result(PRETEXT_TABLE, {"config.feature_attr_method": "Saliency"}, **_pretext(1, 0.4))
    note, table = sections.pretext("mnist", [result]).blocks[:2]
    assert note.text.endswith(
        "(ours: mean ± std over 1 run). Not comparable: this run used "
        "feature_attr_method=Saliency (published: GradientShap)."
    )
    assert table.rows[0][1] == "0.4" and table.rows[0][4] == "- (other settings)"


def test_disvae_compares_each_loss_and_beta_and_leaves_outliers_out_of_the_spread() -> None:
    table = pd.DataFrame(
        {
            "loss": ["beta_vae", "beta_vae", "beta_tc_vae"],
            "beta": [1.0, 1.0, 5.0],
            "pearson": [0.2, 0.3, 0.9],
            "spearman": [0.9, 0.95, 0.97],
        }
    )
    section = sections.disvae("mnist", [_result(table)])
    title, comparison = section.blocks[:2]
    assert title.text == (
        "**MNIST: mean Pearson correlation between units' saliency** "
        "(ours: mean ± std over the models of each beta)."
    )
    assert comparison.rows == [
        [
            "beta_vae, beta = 1",
            "0.25 ± 0.05",
            "0.241 ± 0.031 [R4]; 0.0244 [R3] (outlier)",
            "0.21 to 0.272",
            "yes",
        ],
        [
            "beta_tc_vae, beta = 5",
            "0.9",
            "0.241 ± 0.031 [R4]; 0.0245 [R3] (outlier)",
            "0.21 to 0.272",
            "no",
        ],
    ]
    assert section.blocks[2] == Paragraph(
        "Left out of the spread: [R3]: [R3] App. F Table 4 is 10x below the other "
        "reproductions on MNIST; unexplained.",
        css="note",
    )
    assert [name for name, _, _ in section.figures] == ["box_plots", "pearson_vs_published"]
    assert sections.disvae("mnist", [_result(None)]).figures == []


def test_the_comparison_figure_draws_each_source_its_std_and_the_spread() -> None:
    rows = [
        ("a", {"R1": (0.4, 0.02), OURS: (0.5, None)}),
        ("b", {"R1": (0.1, None), "R2": (0.2, 0.05), OURS: (0.15, 0.01)}),
    ]
    figure = reference_comparison(rows, "Pearson r", "title", [(0.38, 0.42), None])
    (axes,) = figure.axes
    assert [t.get_text() for t in axes.get_yticklabels()] == ["b", "a"]  # first row on top
    assert (axes.get_xlabel(), axes.get_title()) == ("Pearson r", "title")
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert legend == ["R1", "R2", OURS, "published spread"]
    # Markers: row "a" at y = 1, "b" at y = 0, each source offset; ours black diamonds.
    # (Error-bar caps are lines too, marked "|": left out.)
    points: dict[str, list[tuple[float, float, str]]] = {}
    for line in axes.get_lines():
        if line.get_marker() in ("D", "o") and len(line.get_xdata()) == 1:
            points.setdefault(line.get_color(), []).append(
                (line.get_xdata()[0], line.get_ydata()[0], line.get_marker())
            )
    ours = sorted(points["black"])
    assert [(x, m) for x, _, m in ours] == [(0.15, "D"), (0.5, "D")]
    assert ours[1][1] == pytest.approx(1 + 0.25) and ours[0][1] == pytest.approx(0 + 0.25)
    # Row "b" has R1 and R2: their circles sit at the offsets -0.25 and 0 around y = 0.
    others = sorted(p for colour, ps in points.items() if colour != "black" for p in ps)
    assert [m for _, _, m in others] == ["o"] * 3
    np.testing.assert_allclose([xy for *xy, _ in others], [[0.1, -0.25], [0.2, 0.0], [0.4, 0.75]])
    # The spread of row "a" only: a band from 0.38 to 0.42 around y = 1.
    bands = [c for c in axes.collections if isinstance(c, PolyCollection) and len(c.get_paths())]
    (band,) = [b for b in bands if b.get_paths()[0].vertices.size]
    xs, ys = band.get_paths()[0].vertices.T
    assert (xs.min(), xs.max()) == pytest.approx((0.38, 0.42))
    assert (ys.min(), ys.max()) == pytest.approx((0.65, 1.35))
    np.testing.assert_allclose(figure.get_size_inches(), [6.4, 0.42 * 2 + 1.3])


def test_the_comparison_figure_s_legend_sits_right_of_the_axes_at_their_top() -> None:
    rows = [("a", {"R1": (0.4, 0.02), OURS: (0.5, 0.01)})]
    figure = reference_comparison(rows, "r", spreads=[(0.38, 0.42)])
    (axes,) = figure.axes
    figure.canvas.draw()
    box, legend = axes.get_window_extent(), axes.get_legend()
    frame = legend.get_window_extent()
    assert frame.x0 > box.x1  # outside: it never hides a marker
    pad = legend.borderaxespad * 8 * figure.dpi / 72  # matplotlib's pad, in pixels
    assert frame.y1 == pytest.approx(box.y1 - pad, abs=0.5)  # hung from the axes' top
    assert {t.get_fontsize() for t in legend.get_texts()} == {8}
    # Small markers with small caps: several sources share a row; the band has no edge.
    markers = [line for line in axes.get_lines() if line.get_marker() in ("D", "o")]
    caps = [line for line in axes.get_lines() if line.get_marker() == "|"]
    assert {line.get_markersize() for line in markers if len(line.get_xdata())} == {4}
    assert caps and {line.get_markersize() for line in caps} == {4}  # 2 x capsize
    (band,) = [c for c in axes.collections if isinstance(c, PolyCollection) and c.get_paths()]
    assert list(band.get_linewidths()) == [0]


def test_the_comparison_figure_s_bars_are_each_std_and_its_legend_matches_the_markers() -> None:
    rows = [("a", {"R1": (0.4, 0.02), OURS: (0.5, None)}), ("b", {OURS: (0.15, 0.01)})]
    axes = reference_comparison(rows, "r", spreads=[(0.38, 0.42), None]).axes[0]
    assert axes.get_title() == ""
    # Each marker's horizontal bar spans mean ± std (no std: a bar of no width).
    bars = sorted(
        tuple(segment[:, 0])
        for collection in axes.collections
        if isinstance(collection, LineCollection)
        for segment in collection.get_segments()
    )
    np.testing.assert_allclose(bars, [(0.14, 0.16), (0.38, 0.42), (0.5, 0.5)])
    # The legend's entries are drawn as the data: R1 in its colour as a circle, ours black
    # diamonds, the spread as the band's grey.
    handles = dict(zip(*reversed(axes.get_legend_handles_labels()), strict=True))
    markers = {
        line.get_color(): line.get_marker()
        for line in axes.get_lines()
        if line.get_marker() in ("D", "o")
    }
    assert markers[handles["R1"].get_color()] == handles["R1"].get_marker() == "o"
    assert handles[OURS].get_color() == "black" and handles[OURS].get_marker() == "D"
    assert handles["R1"].get_color() != "black"
    (band,) = [c for c in axes.collections if isinstance(c, PolyCollection) and c.get_paths()]
    grey = (0.85, 0.85, 0.85, 1.0)
    np.testing.assert_allclose(band.get_facecolor()[0], grey)
    np.testing.assert_allclose(handles["published spread"].get_facecolor()[0], grey)


def test_the_comparison_figure_without_published_values_centres_ours_on_each_row() -> None:
    rows = [("a", {OURS: (0.5, None)}), ("b", {OURS: (0.2, 0.1)})]
    axes = reference_comparison(rows, "r").axes[0]
    points = sorted(
        (line.get_ydata()[0], line.get_xdata()[0])
        for line in axes.get_lines()
        if line.get_marker() == "D" and len(line.get_xdata())
    )
    assert points == [(0.0, 0.2), (1.0, 0.5)]


def test_the_curve_sections_label_their_axes_and_draw_bottom_rates_dashed() -> None:
    features = sections.consistency_features("mnist", [_result(_curves(0.0))])
    assert features.figures[0][1].axes[0].get_ylabel() == "representation shift"
    rates = pd.DataFrame(
        [("DKNN", "top", 5, 0.9), ("DKNN", "bottom", 5, 0.1), ("DKNN", "top", 50, 0.4)],
        columns=["method", "type", "pct_examples", "similarity_rate"],
    )
    axes = sections.consistency_examples("mnist", [_result(rates)]).figures[0][1].axes[0]
    assert axes.get_xlabel() == "% most (solid) / least (dashed) important train examples"
    assert axes.get_ylabel() == "similarity rate"
    styles = {tuple(line.get_ydata()): line.get_linestyle() for line in axes.get_lines()}
    assert styles[(0.9, 0.4)] == "-" and styles[(0.1,)] == "--"
    losses = pd.DataFrame([("Saliency", 0, 0.02)], columns=["method", "pct_removed", "test_loss"])
    axes = sections.roar_test("mnist", [_result(losses)]).figures[0][1].axes[0]
    assert (axes.get_ylabel(), axes.get_title()) == ("test loss", "MNIST: ROAR")


@pytest.fixture()
def drawn(monkeypatch) -> dict[str, tuple]:
    """What the comparison, heatmap and box-plot figures were asked to draw, by figure."""
    calls: dict[str, tuple] = {}

    def recorder(name: str):
        def record(*args, **kwargs):
            calls[name] = (*args, kwargs)
            return name

        return record

    for name in ("reference_comparison", "correlation_heatmaps", "metric_box_plots"):
        monkeypatch.setattr(sections, name, recorder(name))
    return calls


def test_a_comparison_row_shows_ours_or_a_dash_and_the_spread_to_three_digits(drawn) -> None:
    published = [Published("R1", 0.41234, 0.01111)]
    rows = [
        ("a", None, published),  # not measured by us
        ("b", (0.5, float("nan"), 1), []),  # one run: no std; nothing published
        ("c", (0.3, 0.1, 2), published),
    ]
    table, figure = sections.comparison(rows, "Pearson r", "the title")
    assert table.rows == [
        ["a", "-", "0.412 ± 0.0111 [R1]", "0.401 to 0.423", "-"],
        ["b", "0.5", "", "-", "-"],
        ["c", "0.3 ± 0.1", "0.412 ± 0.0111 [R1]", "0.401 to 0.423", "no"],
    ]
    assert figure == "reference_comparison"
    plot_rows, unit, title, spreads, _ = drawn["reference_comparison"]
    assert (unit, title) == ("Pearson r", "the title")
    assert plot_rows == [
        ("a", {"R1": (0.41234, 0.01111)}),
        ("b", {OURS: (0.5, None)}),
        ("c", {"R1": (0.41234, 0.01111), OURS: (0.3, 0.1)}),
    ]
    assert spreads[1] is None and spreads[0] == spreads[2] == pytest.approx((0.40123, 0.42345))
    drawn.clear()
    empty, figure = sections.comparison([], "Pearson r", "t")
    assert (empty.rows, figure) == ([], None)
    assert not drawn  # no figure of nothing


def test_pretext_keeps_the_pairs_of_its_tasks_and_maps_every_correlation(drawn) -> None:
    # Two tasks, in the table's order; the reference's first pair (reconstruction-denoising)
    # is not among them, its later scae-reconstruction pair is.
    runs = np.array([[[1.0, 0.2], [0.2, 1.0]], [[1.0, 0.4], [0.4, 1.0]]])
    evidence = {
        "features_pearson": runs,
        "features_spearman": runs * 0.5,
        "examples_pearson": runs * 0.25,
        "examples_spearman": runs * 0.125,
    }
    table = pd.DataFrame({"task_a": ["scae", "reconstruction"], "task_b": ["x", "y"]})
    section = sections.pretext("mnist", [_result(table, **evidence)])
    assert section.blocks[1].rows == []  # no published pair of saliency between them
    (row,) = section.blocks[3].rows
    assert row[:2] == ["SCAE-Reconstruction", "0.075 ± 0.025"]
    _, unit, title, _, _ = drawn["reference_comparison"]
    assert (unit, title) == (
        "Pearson r",
        "Pearson correlation of example importance between pretext tasks",
    )
    panels, labels, heading, _ = drawn["correlation_heatmaps"]
    assert (labels, heading) == (["SCAE", "Reconstruction"], "Correlation between tasks")
    scales = {
        "feature importance, Pearson": 1.0,
        "feature importance, Spearman": 0.5,
        "example importance, Pearson": 0.25,
        "example importance, Spearman": 0.125,
    }
    assert list(panels) == list(scales)
    for label, scale in scales.items():  # the mean and std over runs of each cell
        mean, std = panels[label]
        np.testing.assert_allclose(mean, [[scale, 0.3 * scale], [0.3 * scale, scale]])
        np.testing.assert_allclose(std, [[0, 0.1 * scale], [0.1 * scale, 0]], atol=1e-12)
    assert section.figures[0] == (
        "correlations",
        "correlation_heatmaps",
        "Correlation between the pretext tasks' explanations (mean ± std over runs)",
    )
    examples_only = {k: v for k, v in evidence.items() if k.startswith("examples")}
    blocks = sections.pretext("mnist", [_result(table, **examples_only)]).blocks
    assert blocks[0].text.startswith("**Pearson correlation of example importance")
    assert blocks[1].rows[0][:2] == ["SCAE-Reconstruction", "0.075 ± 0.025"]
    drawn.clear()
    without_table = sections.pretext("mnist", [_result(None, **evidence)])
    assert without_table.figures == [] and not drawn  # no tasks to label a heatmap with


def test_disvae_of_a_data_set_or_loss_without_outliers_or_values_shows_dashes(drawn) -> None:
    table = pd.DataFrame(
        {
            "loss": ["vae", "beta_vae"],
            "beta": [1.0, 1.0],
            "pearson": [0.3, 0.2],
            "spearman": [0.9] * 2,
        }
    )
    section = sections.disvae("dsprites", [_result(table)])
    ref = reference.load()["disvae"]
    title, comparison, *notes = section.blocks
    assert title.text.startswith("**dSprites: mean Pearson correlation between units' saliency**")
    assert comparison.rows[0] == ["vae, beta = 1", "0.3", "", "-", "-"]  # nothing published
    assert notes == [Paragraph(note, css="note") for note in ref["notes"]]  # no outliers
    rows, unit, heading, _, _ = drawn["reference_comparison"]
    assert (unit, heading) == ("Pearson r", title.text.split("**")[1])
    boxed, metrics, options = drawn["metric_box_plots"]
    pd.testing.assert_frame_equal(boxed, table)
    assert (metrics, options) == (["pearson", "spearman"], {"title": "dSprites"})
    assert section.figures[0] == (
        "box_plots",
        "metric_box_plots",
        "Saliency correlation between latent units per beta and loss",
    )
    assert sections.disvae("mnist", [_result(None)]).blocks == []
