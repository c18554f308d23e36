"""The published reproductions' numbers (``lfxai/reference/reproductions.yaml``, package data).

A value is ``mean ± std`` of one source (``std`` None when the source gives none). The
*spread* of the reproductions at one quantity runs from the lowest ``mean - std`` to the
highest ``mean + std`` over its sources (a value without std counts as its mean), leaving out
the values the file marks as outliers (they are still shown); ours is *inside* when its mean
falls within it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

REFERENCE_FILE = "reproductions.yaml"


@dataclass(frozen=True)
class Published:
    """One source's value at one quantity."""

    source: str
    mean: float
    std: float | None
    outlier: bool = False

    def text(self) -> str:
        """``mean ± std [source]`` (and whether it is an outlier)."""
        spread = "" if self.std is None else f" ± {self.std:.3g}"
        flag = " (outlier)" if self.outlier else ""
        return f"{self.mean:.3g}{spread} [{self.source}]{flag}"


@cache
def load() -> dict[str, Any]:
    """The reference file's content (parsed once)."""
    text = resources.files("lfxai").joinpath("reference", REFERENCE_FILE).read_text("utf-8")
    return yaml.safe_load(text)


def citation(key: str) -> str:
    """``[R1] Pariza, Pal, Pawar, Serra Faber. ReScience C (MLRC 2022), DOI ...``."""
    source = load()["sources"][key]
    return f"[{key}] {source['authors']}. {source['venue']}, DOI {source['doi']}."


def published(entry: dict[str, Any], outliers: set[str] = frozenset()) -> list[Published]:
    """The sources' values in one row of the file (``R<i>: [mean, std]`` items)."""
    out = []
    for key, value in entry.items():
        if key in load()["sources"] and isinstance(value, list):
            mean, std = value
            std = None if std is None else float(std)
            out.append(Published(key, float(mean), std, key in outliers))
    return out


def spread(values: list[Published]) -> tuple[float, float] | None:
    """``(low, high)`` over the values that are not outliers; None when they have no spread.

    None: none kept, or none with a std (one bare value is no interval).
    """
    kept = [v for v in values if not v.outlier]
    if not any(v.std is not None for v in kept):
        return None
    low = min(v.mean - (v.std or 0.0) for v in kept)
    high = max(v.mean + (v.std or 0.0) for v in kept)
    return low, high


def inside(value: float, bounds: tuple[float, float] | None) -> str:
    """``yes`` / ``no`` (ours within the spread), ``-`` when it cannot be said."""
    if bounds is None or value is None or math.isnan(value):
        return "-"
    return "yes" if bounds[0] <= value <= bounds[1] else "no"


def finding(dataset: str, experiment: str) -> dict[str, Any] | None:
    """What the reproductions found for one experiment (text and sources), if recorded."""
    return load().get("findings", {}).get(f"{dataset}/{experiment}")


def gpu_hours(dataset: str, experiment: str) -> float | None:
    """[R3]'s GPU-hours for one experiment (published; not measured by us)."""
    return load().get("compute", {}).get("R3_gpu_hours", {}).get(f"{dataset}/{experiment}")
