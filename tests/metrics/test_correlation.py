"""Correlation matrices between explanations: Pearson and Spearman (ties averaged)."""

from __future__ import annotations

import statistics

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from lfxai.metrics.correlation import (
    CORRELATIONS,
    correlation_matrix,
    correlation_table,
    latex_tables,
    off_diagonal_mean,
)


def test_correlation_matrices_are_symmetric_with_unit_diagonal() -> None:
    generator = np.random.default_rng(0)
    maps = generator.random((4, 30, 1, 5, 5))
    maps[1] = 2 * maps[0] + 1  # same explanation up to an affine map
    maps[2] = -(maps[0] ** 3)  # same ranking, reversed, non-linearly
    for method in CORRELATIONS:
        matrix = correlation_matrix(maps, method)
        assert matrix.shape == (4, 4)
        np.testing.assert_allclose(matrix, matrix.T, atol=1e-12)
        np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-12)
        assert matrix[0, 1] == pytest.approx(1.0)
    flat = maps.reshape(4, -1)
    pearson = correlation_matrix(maps, "pearson")
    np.testing.assert_allclose(pearson, np.corrcoef(flat), atol=1e-10)
    spearman = correlation_matrix(maps, "spearman")
    np.testing.assert_allclose(spearman, spearmanr(flat, axis=1)[0], atol=1e-10)
    assert spearman[0, 2] == pytest.approx(-1.0) and pearson[0, 2] > -1 + 1e-3
    with pytest.raises(ValueError, match="valid choices"):
        correlation_matrix(maps, "kendall")


def test_spearman_averages_tied_ranks() -> None:
    """GradientShap against a black baseline gives many exact zeros: ties must be ranked."""
    maps = np.array([[0.0, 0.0, 0.0, 1.0, 2.0], [0.0, 0.0, 5.0, 0.0, 3.0]])
    expected = spearmanr(maps[0], maps[1])[0]
    assert correlation_matrix(maps, "spearman")[0, 1] == pytest.approx(expected)


def test_off_diagonal_mean_ignores_the_diagonal() -> None:
    matrix = np.array([[1.0, 0.2, 0.4], [0.2, 1.0, 0.6], [0.4, 0.6, 1.0]])
    assert off_diagonal_mean(matrix) == pytest.approx(0.4)


@pytest.mark.filterwarnings("error")
def test_a_constant_map_has_nan_correlations_without_a_warning() -> None:
    """A constant map has no direction: NaN (skipped by nanmean), whatever its value."""
    varied = np.array([0.3, 0.9, 0.1, 0.5, 0.7, 0.2])
    # The mean of six 0.1s is not exactly 0.1: centring alone leaves a constant map a sign.
    maps = np.stack([np.full(6, 0.1), varied, np.zeros(6), np.full(6, -0.1), 2 * varied])
    constant = [0, 2, 3]
    for method in CORRELATIONS:
        matrix = correlation_matrix(maps, method)
        assert np.isnan(matrix[constant]).all() and np.isnan(matrix[:, constant]).all()
        np.testing.assert_allclose(matrix[np.ix_([1, 4], [1, 4])], 1.0, atol=1e-12)


def test_rounding_never_pushes_a_correlation_past_one() -> None:
    """Cosines of unit vectors: +-1 exactly for (anti-)copies, though 2 * (1/sqrt 2)^2 > 1."""
    maps = np.array([[0.0, 3.0], [0.0, -3.0]])
    np.testing.assert_array_equal(correlation_matrix(maps, "pearson"), [[1.0, -1.0], [-1.0, 1.0]])


def test_correlation_table_has_one_row_per_key_and_ordered_pair() -> None:
    """Mean and population std over runs of each cell, rows in key, task_a, task_b order."""
    generator = np.random.default_rng(3)
    # 3 runs of 2x2 non-symmetric matrices: reducing over a task axis gives other numbers.
    keys = [("features", "spearman"), ("examples", "pearson")]
    matrices = {key: generator.uniform(-1, 1, (3, 2, 2)) for key in keys}
    tasks = ["reconstruction", "denoising"]
    table = correlation_table(matrices, tasks)
    assert list(table.columns) == [
        "explanation", "correlation", "task_a", "task_b", "mean", "std", "n_runs"
    ]  # fmt: skip
    expected_order = [(*key, a, b) for key in keys for a in tasks for b in tasks]
    assert list(table.iloc[:, :4].itertuples(index=False, name=None)) == expected_order
    assert set(table.n_runs) == {3}
    for row in table.itertuples():
        runs = matrices[(row.explanation, row.correlation)]
        cell = runs[:, tasks.index(row.task_a), tasks.index(row.task_b)].tolist()
        assert row.mean == pytest.approx(statistics.fmean(cell), abs=1e-15)
        assert row.std == pytest.approx(statistics.pstdev(cell), abs=1e-15)


def _long_table(
    cells: dict[tuple[str, str], dict[tuple[str, str], tuple[float, float]]],
) -> pd.DataFrame:
    """A correlation_table-shaped frame: (explanation, correlation) -> (a, b) -> (mean, std)."""
    rows = [
        {"explanation": e, "correlation": c, "task_a": a, "task_b": b, "mean": m, "std": s}
        for (e, c), pairs in cells.items()
        for (a, b), (m, s) in pairs.items()
    ]
    return pd.DataFrame(rows).assign(n_runs=2)


def test_latex_tables_one_booktabs_table_per_key_in_table_order() -> None:
    """Rows task_a, columns task_b, in the tasks' order and with their titles; cells 2 d.p."""
    tasks = ["reconstruction", "denoising"]
    titles = {"denoising": "Denoising", "reconstruction": "Reconstruction", "scae": "SCAE"}
    # Pairs listed out of task order: the cells are looked up by name, not by position.
    features = {
        ("denoising", "denoising"): (0.996, 0.0),
        ("denoising", "reconstruction"): (-0.456, 0.0051),
        ("reconstruction", "denoising"): (0.123, 0.0449),
        ("reconstruction", "reconstruction"): (1.0, 0.0),
    }
    examples = {pair: (0.5, 0.25) for pair in features}
    # features before examples: the tables follow the table's order, not alphabetical.
    table = _long_table({("features", "spearman"): features, ("examples", "pearson"): examples})
    latex = latex_tables(table, tasks, titles)
    first = [
        "\\begin{table}[h]",
        "\\centering",
        "\\caption{Spearman correlation of label-free features importance between pretext tasks"
        " (mean $\\pm$ std over runs)}",
        "\\begin{tabular}{lcc}",
        "\\toprule",
        " & Reconstruction & Denoising \\\\",
        "\\midrule",
        "Reconstruction & $1.00 \\pm 0.00$ & $0.12 \\pm 0.04$ \\\\",
        "Denoising & $-0.46 \\pm 0.01$ & $1.00 \\pm 0.00$ \\\\",
        "\\bottomrule",
        "\\end{tabular}",
        "\\end{table}",
    ]
    second = [
        *first[:2],
        "\\caption{Pearson correlation of label-free examples importance between pretext tasks"
        " (mean $\\pm$ std over runs)}",
        *first[3:7],
        "Reconstruction & $0.50 \\pm 0.25$ & $0.50 \\pm 0.25$ \\\\",
        "Denoising & $0.50 \\pm 0.25$ & $0.50 \\pm 0.25$ \\\\",
        *first[9:],
    ]
    # Each table ends with a newline; a blank line separates two tables.
    assert latex == "\n".join(first) + "\n\n" + "\n".join(second) + "\n"
