"""Per experiment: its key numbers and its figures, beside the published reproductions'.

The figures are redrawn from the logged results.

Every figure is drawn by :mod:`lfxai.plotting` under :func:`lfxai.plotting.style.report_style`,
from the runs' tables and arrays (averaged over runs when there are several).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lfxai.experiments.pretext_models import TITLES
from lfxai.metrics.verdicts import fmt
from lfxai.plotting.curves import method_curves
from lfxai.plotting.disentanglement import metric_box_plots
from lfxai.plotting.heatmaps import correlation_heatmaps
from lfxai.plotting.reference import OURS, reference_comparison
from lfxai.plugins import get_dataset
from lfxai.report import reference
from lfxai.report.document import Block, Paragraph, Table
from lfxai.report.results import RunResult, mean_table


@dataclass
class Section:
    """What one experiment adds to the report besides its claims.

    Attributes:
        blocks: tables and notes.
        figures: ``(name, figure, caption)``; the report saves them as PNG.
    """

    blocks: list[Block]
    figures: list[tuple[str, Figure, str]]


def _mean_std(mean: float, std: float, n: int) -> str:
    return fmt(mean) if n < 2 or np.isnan(std) else f"{fmt(mean)} ± {fmt(std, 2)}"


def _curve_table(frame: pd.DataFrame, row_keys: list[str], x: str) -> Table:
    """Rows ``row_keys``, one column per ``x`` value: ``mean (± std over runs)``."""
    xs = sorted(frame[x].unique())
    rows = []
    for keys, part in frame.groupby(row_keys, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        cells = part.set_index(x)
        rows.append(
            [*map(str, keys)]
            + [
                _mean_std(cells.loc[k, "mean"], cells.loc[k, "std"], cells.loc[k, "n"])
                if k in cells.index
                else "-"
                for k in xs
            ]
        )
    return Table([*row_keys, *(f"k = {k:g}%" for k in xs)], rows)


def _runs_note(results: list[RunResult]) -> str:
    n = len(results)
    return "one run" if n == 1 else f"the mean (± std) over {n} runs of the same settings"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def consistency_features(dataset: str, results: list[RunResult]) -> Section:
    """The representation shift curves and their claims, beside the published ones."""
    plugin = get_dataset(dataset)
    frame = mean_table(results, ["method", "pct_perturbed"], "representation_shift")
    table = _curve_table(frame, ["method"], "pct_perturbed")
    note = (
        "Representation shift (mean squared L2 distance between the codes before and after "
        f"perturbing the top k% {plugin.feature_unit}), {_runs_note(results)}."
    )
    curve = frame.rename(columns={"mean": "representation_shift"})
    figure = method_curves(
        curve,
        "pct_perturbed",
        "representation_shift",
        xlabel=f"% {plugin.feature_unit} perturbed",
        ylabel="representation shift",
        title=f"{plugin.title}: feature importance consistency",
    )
    caption = (
        f"{plugin.title}: representation shift against the % of {plugin.feature_unit} perturbed"
    )
    return Section([Paragraph(note), table], [("shift", figure, caption)])


def consistency_examples(dataset: str, results: list[RunResult]) -> Section:
    """The similarity rate curves and their claims, beside the published ones."""
    plugin = get_dataset(dataset)
    frame = mean_table(results, ["method", "type", "pct_examples"], "similarity_rate")
    table = _curve_table(frame, ["method", "type"], "pct_examples")
    note = (
        "Similarity rate: how often the top (bottom) k% training examples share the test "
        f"example's label, {_runs_note(results)}."
    )
    curve = frame.rename(columns={"mean": "similarity_rate"})
    figure = method_curves(
        curve,
        "pct_examples",
        "similarity_rate",
        style="type",
        xlabel="% most (solid) / least (dashed) important train examples",
        ylabel="similarity rate",
        title=f"{plugin.title}: example importance consistency",
    )
    caption = f"{plugin.title}: similarity rate of the top and bottom k% training examples"
    return Section([Paragraph(note), table], [("similarity", figure, caption)])


def roar_test(dataset: str, results: list[RunResult]) -> Section:
    """The retrained test loss curves and their claims, beside the published ones."""
    plugin = get_dataset(dataset)
    frame = mean_table(results, ["method", "pct_removed"], "test_loss")
    table = _curve_table(frame, ["method"], "pct_removed")
    note = (
        f"Test loss after retraining without the top k% training {plugin.feature_unit} "
        f"(k = 0: the base model), {_runs_note(results)}."
    )
    curve = frame.rename(columns={"mean": "test_loss"})
    figure = method_curves(
        curve,
        "pct_removed",
        "test_loss",
        xlabel=f"% training {plugin.feature_unit} removed",
        ylabel="test loss",
        title=f"{plugin.title}: ROAR",
    )
    caption = f"{plugin.title}: test loss after retraining without the top k% {plugin.feature_unit}"
    return Section([Paragraph(note), table], [("roar", figure, caption)])


def comparison(
    rows: list[tuple[str, tuple[float, float, int] | None, list[reference.Published]]],
    unit: str,
    title: str,
    comparable: bool = True,
) -> tuple[Table, Figure | None]:
    """The table (ours, published, spread, inside?) and the figure of a set of quantities.

    ``comparable`` False (other settings than the published): no inside/outside verdict.
    """
    table_rows, plot_rows, spreads = [], [], []
    for label, ours, published in rows:
        bounds = reference.spread(published)
        mean = None if ours is None else ours[0]
        shown = "-" if ours is None else _mean_std(*ours)
        spread_text = "-" if bounds is None else f"{fmt(bounds[0], 3)} to {fmt(bounds[1], 3)}"
        table_rows.append(
            [
                label,
                shown,
                "; ".join(p.text() for p in published),
                spread_text,
                reference.inside(mean, bounds) if comparable else "- (other settings)",
            ]
        )
        values = {p.source: (p.mean, p.std) for p in published}
        if ours is not None:
            values[OURS] = (ours[0], None if np.isnan(ours[1]) else ours[1])
        plot_rows.append((label, values))
        spreads.append(bounds)
    header = ["quantity", f"ours ({unit})", "published (mean ± std)", "their spread", "inside?"]
    figure = reference_comparison(plot_rows, unit, title, spreads) if plot_rows else None
    return Table(header, table_rows), figure


def _differs(results: list[RunResult], key: str, published: str) -> str:
    """``key=<ours> (published: <theirs>)`` when our run's setting is not the published one."""
    ours = results[0].run.params.get(f"config.{key}", published)
    return "" if ours == published else f"{key}={ours} (published: {published})"


PRETEXT_KINDS = {  # evidence name -> (what is explained, the setting that picks the method)
    "features_pearson": ("saliency", "feature_attr_method"),
    "examples_pearson": ("example importance", "example_attr_method"),
}


def pretext(dataset: str, results: list[RunResult]) -> Section:
    """The correlation matrices between pretext tasks, beside the published ones."""
    ref = reference.load()["pretext"]
    names = ("features_pearson", "features_spearman", "examples_pearson", "examples_spearman")
    runs = {
        name: np.concatenate([r.evidence[name] for r in results if name in r.evidence])
        for name in names
        if any(name in r.evidence for r in results)
    }
    table = results[0].table
    tasks = list(dict.fromkeys(table["task_a"])) if table is not None else []
    blocks: list[Block] = []
    figures: list[tuple[str, Figure, str]] = []
    for name, (label, setting) in PRETEXT_KINDS.items():
        if name not in runs:
            continue
        per_run = runs[name]
        rows = []
        for entry in ref[name]:
            a, b = entry["tasks"]
            if a in tasks and b in tasks:
                values = per_run[:, tasks.index(a), tasks.index(b)]
                ours = (float(values.mean()), float(values.std()), len(values))
                rows.append((f"{TITLES[a]}-{TITLES[b]}", ours, reference.published(entry)))
        title = f"Pearson correlation of {label} between pretext tasks"
        differ = _differs(results, setting, ref["conditions"][setting])
        table_block, figure = comparison(rows, "Pearson r", title, comparable=not differ)
        note = f"**{title}** (ours: mean ± std over {_plural(len(per_run), 'run')})."
        if differ:
            note += f" Not comparable: this run used {differ}."
        blocks += [Paragraph(note), table_block]
        if figure is not None:
            figures.append((f"{name}_vs_published", figure, f"{title}: ours beside the published"))
    if runs and tasks:
        panels = {}
        for name, per_run in runs.items():
            explanation, correlation = name.split("_")
            label = f"{explanation.removesuffix('s')} importance, {correlation.capitalize()}"
            panels[label] = (per_run.mean(0), per_run.std(0))
        heat = correlation_heatmaps(panels, [TITLES[t] for t in tasks], "Correlation between tasks")
        caption = "Correlation between the pretext tasks' explanations (mean ± std over runs)"
        figures.insert(0, ("correlations", heat, caption))
    blocks += [Paragraph(note, css="note") for note in ref.get("notes", [])]
    return Section(blocks, figures)


def disvae(dataset: str, results: list[RunResult]) -> Section:
    """The saliency metrics per loss and beta, beside the published ones."""
    ref = reference.load()["disvae"]
    frames = [r.table for r in results if r.table is not None]
    if not frames:
        return Section([], [])
    table = pd.concat(frames)
    outliers = set(ref.get("outliers", {}).get(dataset, {}))
    rows = []
    for (loss, beta), group in table.groupby(["loss", "beta"], sort=False):
        values = group["pearson"].to_numpy(dtype=float)
        ours = (float(values.mean()), float(values.std()), len(values))
        entry = ref.get(dataset, {}).get(loss, {}).get(int(beta)) or {}
        rows.append((f"{loss}, beta = {beta:g}", ours, reference.published(entry, outliers)))
    title = f"{get_dataset(dataset).title}: mean Pearson correlation between units' saliency"
    compared, figure = comparison(rows, "Pearson r", title)
    notes = [Paragraph(f"**{title}** (ours: mean ± std over the models of each beta)."), compared]
    for source, why in ref.get("outliers", {}).get(dataset, {}).items():
        notes.append(Paragraph(f"Left out of the spread: [{source}]: {why}", css="note"))
    notes += [Paragraph(note, css="note") for note in ref.get("notes", [])]
    boxes = metric_box_plots(table, ["pearson", "spearman"], title=get_dataset(dataset).title)
    figures = [("box_plots", boxes, "Saliency correlation between latent units per beta and loss")]
    if figure is not None:
        figures.append(("pearson_vs_published", figure, f"{title}: ours beside the published"))
    return Section(notes, figures)


SECTIONS: dict[str, Callable[[str, list[RunResult]], Section]] = {
    "consistency_features": consistency_features,
    "consistency_examples": consistency_examples,
    "roar_test": roar_test,
    "pretext": pretext,
    "disvae": disvae,
}
