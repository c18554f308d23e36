"""Procedural dSprites: the official factor grid rasterised by point-in-shape tests.

The official images were drawn as vector shapes (Love2D) on a canvas of normalised size 1 and
rasterised at 64x64 without anti-aliasing: a pixel is white when its centre lies inside the
shape. We do the same, vectorised: the pixel centres of a chunk of images are mapped into
their sprites' frames and tested at once on a broadcast ``(image, row, col)`` grid (no Python
loop over images or pixels).

Geometry (pixels of the 64x64 image, at scale 1; fitted to 320 real frames, see
``benchmarks/compare_dsprites.py``): the sprite centre is ``16 + 32 * pos`` (so positions
0..1 cover the middle half of the image), ``pos_x`` moves along columns and ``pos_y`` along
rows (down); a square has side 19.2 (0.3 of the image), the ellipse semi-axes 12.75
(horizontal at orientation 0) and 7.25, the heart is two overlapping discs of radius 5.1 on a
V of about 43 degrees from the vertical, tip down at orientation 0;
``orientation`` turns the sprite counter-clockwise on screen; every length is multiplied by
``scale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

SHAPES = ("square", "ellipse", "heart")
FACTORS = ("shape", "scale", "orientation", "pos_x", "pos_y")
"""The five factors in the official index order (``pos_y`` varies fastest)."""
GRID = (3, 6, 40, 32, 32)
"""Number of values of each factor of :data:`FACTORS`: 737,280 images in all."""
IMAGE_SIDE = 64
RENDERER_VERSION = 1
"""Bumped whenever the rendered pixels change, so that an older cache is re-rendered."""


def factor_values() -> tuple[np.ndarray, ...]:
    """The values of each factor, as in the official ``latents_values`` (float64).

    Shape 1..3 (square, ellipse, heart), scale ``linspace(0.5, 1, 6)``, orientation
    ``linspace(0, 2 pi, 40)`` (both ends: 0 and 2 pi draw the same sprite), positions
    ``linspace(0, 1, 32)``.
    """
    return (
        np.arange(1.0, GRID[0] + 1),
        np.linspace(0.5, 1.0, GRID[1]),
        np.linspace(0.0, 2 * math.pi, GRID[2]),
        np.linspace(0.0, 1.0, GRID[3]),
        np.linspace(0.0, 1.0, GRID[4]),
    )


def classes_of(index: np.ndarray) -> np.ndarray:
    """The factor classes ``(n, 5)`` (int64, order of :data:`FACTORS`) of image indices."""
    return np.stack(np.unravel_index(np.asarray(index, dtype=np.int64), GRID), axis=1)


def values_of(classes: np.ndarray) -> np.ndarray:
    """The factor values ``(n, 5)`` (float64) of factor classes ``(n, 5)``."""
    columns = [values[classes[:, k]] for k, values in enumerate(factor_values())]
    return np.stack(columns, axis=1)


def index_of(classes: np.ndarray) -> np.ndarray:
    """The image indices ``(n,)`` of factor classes ``(n, 5)``: inverse of :func:`classes_of`."""
    return np.ravel_multi_index(tuple(np.asarray(classes).T), GRID)


@dataclass(frozen=True)
class Geometry:
    """Sprite shapes in pixels at scale 1, centred on the sprite's position.

    Attributes:
        origin: pixel coordinate of the centre at position 0 (edges of pixels are integers).
        travel: pixels moved from position 0 to position 1.
        square_half: half the side of the square.
        ellipse_axes: semi-axes of the ellipse, horizontal then vertical at orientation 0.
        heart_radius: radius of the heart's two discs.
        heart_offset: horizontal distance of each disc's centre from the sprite centre.
        heart_centre: vertical offset of the discs' centres (negative: above the centre).
        heart_angle: half-angle of the heart's V, from the vertical, in radians.
    """

    origin: float = 16.0
    travel: float = 32.0
    square_half: float = 9.6
    ellipse_axes: tuple[float, float] = (12.75, 7.25)
    heart_radius: float = 5.125
    heart_offset: float = 4.7
    heart_centre: float = -3.975
    heart_angle: float = 0.744


def inside(shape: int, u: torch.Tensor, v: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Whether sprite-local points (pixels at scale 1, y down) lie inside a shape.

    Args:
        shape: 0 square, 1 ellipse, 2 heart.
        u: horizontal coordinates, any shape.
        v: vertical coordinates (down), broadcastable with ``u``.
        geometry: the shapes' sizes.

    Returns:
        A bool tensor of the broadcast shape.
    """
    if shape == 0:
        return torch.maximum(u.abs(), v.abs()) <= geometry.square_half
    if shape == 1:
        a, b = geometry.ellipse_axes
        return (u / a).square() + (v / b).square() <= 1.0
    if shape == 2:
        r, d, cy = geometry.heart_radius, geometry.heart_offset, geometry.heart_centre
        w = u.abs()  # the heart is symmetric: test the right half
        dv = v - cy
        disc = (w - d).square() + dv.square() <= r * r
        # Below the discs' centres: the polygon (disc centre, tangent point, tip) between the
        # radius to the tangent point and the V's side, which touches the disc.
        nx, ny = math.cos(geometry.heart_angle), math.sin(geometry.heart_angle)
        below_side = nx * (w - d) + ny * dv <= r
        inner = ny * (w - d) <= nx * dv
        return disc | ((dv >= 0) & below_side & inner)
    raise ValueError(f"unknown shape {shape}; valid: 0..{len(SHAPES) - 1} ({SHAPES})")


def _sprite(
    shape: int,
    scale: torch.Tensor | float,
    orientation: torch.Tensor | float,
    dx: torch.Tensor,
    dy: torch.Tensor,
    geometry: Geometry,
) -> torch.Tensor:
    """Point-in-sprite test of screen offsets from the sprite centre.

    ``dx`` holds column offsets with the columns on its last axis, ``dy`` row offsets with
    the rows on its second-to-last axis; they and ``scale`` / ``orientation`` (floats, or
    tensors of one value per image shaped ``(..., 1, 1)``) broadcast to ``(..., 64, 64)``.
    """
    # Screen offset -> sprite frame: undo a counter-clockwise turn (y points down) and the scale.
    # Each coordinate is a column term plus a row term; float64 keeps pixel centres that sit
    # near an edge on the same side on every machine.
    orientation = torch.as_tensor(orientation, dtype=torch.float64)
    cos, sin = torch.cos(orientation) / scale, torch.sin(orientation) / scale
    return inside(shape, cos * dx - sin * dy, sin * dx + cos * dy, geometry)


def _offsets(positions: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Pixel-centre offsets ``(n, 64)`` from the sprite centres at ``positions`` ``(n,)``."""
    pixels = torch.arange(IMAGE_SIDE, dtype=torch.float64) + 0.5
    return pixels[None, :] - (geometry.origin + geometry.travel * positions.double())[:, None]


def render_values(
    shapes: torch.Tensor,
    scales: torch.Tensor,
    orientations: torch.Tensor,
    pos_x: torch.Tensor,
    pos_y: torch.Tensor,
    geometry: Geometry | None = None,
    chunk: int = 2048,
) -> torch.Tensor:
    """Rasterises sprites of arbitrary factor values, one per entry of the ``(n,)`` inputs.

    Args:
        shapes: shape indices 0..2 (square, ellipse, heart).
        scales: size factors.
        orientations: counter-clockwise angles on screen, radians.
        pos_x: horizontal positions in [0, 1].
        pos_y: vertical positions in [0, 1] (down).
        geometry: shape sizes (default: the fitted :class:`Geometry`).
        chunk: images tested at once (bounds the memory: ~30 MB per 1,000 images).

    Returns:
        Bool images ``(n, 64, 64)``. The loop runs over the three shapes and over chunks,
        never over single images or pixels.
    """
    geometry = geometry or Geometry()
    values = [torch.as_tensor(v, dtype=torch.float64) for v in (scales, orientations)]
    positions = [torch.as_tensor(p, dtype=torch.float64) for p in (pos_x, pos_y)]
    shapes = torch.as_tensor(shapes, dtype=torch.int64)
    images = torch.zeros(len(shapes), IMAGE_SIDE, IMAGE_SIDE, dtype=torch.bool)
    for shape in shapes.unique().tolist():
        for members in torch.nonzero(shapes == shape).flatten().split(chunk):
            scale, orientation = (v[members, None, None] for v in values)
            dx = _offsets(positions[0][members], geometry)[:, None, :]
            dy = _offsets(positions[1][members], geometry)[:, :, None]
            images[members] = _sprite(shape, scale, orientation, dx, dy, geometry)
    return images


def render_classes(classes: np.ndarray, geometry: Geometry | None = None) -> torch.Tensor:
    """Rasterises the official images of factor classes ``(n, 5)``: bool ``(n, 64, 64)``."""
    classes = np.asarray(classes, dtype=np.int64).reshape(-1, len(GRID))
    values = values_of(classes)
    return render_values(
        torch.from_numpy(classes[:, 0]),
        *(torch.from_numpy(values[:, k]) for k in range(1, len(GRID))),
        geometry=geometry,
    )
