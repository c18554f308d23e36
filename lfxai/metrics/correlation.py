"""Correlation between the explanations of several models of the same examples.

Each model's explanation (saliency maps ``(N, ...)`` or example importance ``(N, M)``) is
flattened; Pearson and Spearman (average ranks for ties) correlations between every two
models give a ``(T, T)`` matrix per run, summarised over runs by mean and std.
Maps that share many exact zeros (attributions against a black baseline on black pixels)
share those ties, which lifts their Spearman correlation whatever the other values are.

References:
    Crabbé & van der Schaar, "Label-Free Explainability for Unsupervised Models", ICML 2022,
    Section 4.2 (pretext task sensitivity).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

CORRELATIONS = ("pearson", "spearman")


def correlation_matrix(maps: np.ndarray, method: str) -> np.ndarray:
    """Correlations ``(T, T)`` between the flattened explanations of T tasks.

    Args:
        maps: ``(T, ...)``, one explanation array per task (same examples, same order).
        method: ``pearson`` or ``spearman`` (Pearson of average ranks, ties included).
    """
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    if method == "spearman":
        flat = rankdata(flat, axis=1)
    elif method != "pearson":
        raise ValueError(f"unknown correlation {method!r}; valid choices: {list(CORRELATIONS)}")
    constant = np.ptp(flat, axis=1) == 0
    flat = flat - flat.mean(axis=1, keepdims=True)
    flat[constant] = 0.0  # else the rounded mean (of 0.1s is not 0.1) gives it a direction
    with np.errstate(invalid="ignore", divide="ignore"):
        flat = flat / np.linalg.norm(flat, axis=1, keepdims=True)  # a constant map gives NaN
        return np.clip(flat @ flat.T, -1.0, 1.0)


def correlation_table(
    matrices: dict[tuple[str, str], np.ndarray], tasks: list[str]
) -> pd.DataFrame:
    """Long table of mean and std over runs, one row per (explanation, correlation, pair).

    Args:
        matrices: ``(explanation, correlation)`` -> ``(n_runs, T, T)``.
        tasks: the T task names.
    """
    rows = []
    for (explanation, correlation), runs in matrices.items():
        mean, std = runs.mean(axis=0), runs.std(axis=0)
        for i, a in enumerate(tasks):
            for j, b in enumerate(tasks):
                rows.append(
                    {
                        "explanation": explanation,
                        "correlation": correlation,
                        "task_a": a,
                        "task_b": b,
                        "mean": float(mean[i, j]),
                        "std": float(std[i, j]),
                        "n_runs": len(runs),
                    }
                )
    return pd.DataFrame(rows)


def latex_tables(table: pd.DataFrame, tasks: list[str], titles: dict[str, str]) -> str:
    r"""One LaTeX tabular per (explanation, correlation), cells ``mean \pm std``.

    Args:
        table: as :func:`correlation_table` returns it.
        tasks: the tasks, in row and column order.
        titles: display name of each task.
    """
    out = []
    for (explanation, correlation), part in table.groupby(
        ["explanation", "correlation"], sort=False
    ):
        cells = part.set_index(["task_a", "task_b"])
        header = " & ".join(titles[t] for t in tasks)
        lines = [
            "\\begin{table}[h]",
            "\\centering",
            f"\\caption{{{correlation.capitalize()} correlation of label-free {explanation} "
            "importance between pretext tasks (mean $\\pm$ std over runs)}",
            "\\begin{tabular}{l" + "c" * len(tasks) + "}",
            "\\toprule",
            f" & {header} \\\\",
            "\\midrule",
        ]
        for a in tasks:
            values = [cells.loc[(a, b)] for b in tasks]
            row = " & ".join(f"${v['mean']:.2f} \\pm {v['std']:.2f}$" for v in values)
            lines.append(f"{titles[a]} & {row} \\\\")
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
        out.append("\n".join(lines))
    return "\n".join(out)


def off_diagonal_mean(matrix: np.ndarray) -> float:
    """Mean of a square matrix's off-diagonal entries, NaN entries left out."""
    mask = ~np.eye(len(matrix), dtype=bool)
    return float(np.nanmean(matrix[mask]))
