"""The sprite renderer's conventions, each derived by hand from the geometry it documents.

A pixel is white when its centre lies inside the (closed) shape; pixel ``k`` has its centre
at ``k + 0.5``; the sprite centre is ``origin + travel * pos``, ``pos_x`` along columns and
``pos_y`` along rows (down); ``orientation`` turns counter-clockwise on screen; lengths scale
with ``scale``. Expected pixels are counted from those rules, not copied from an output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lfxai.data import sprites
from lfxai.data.sprites import GRID, Geometry, inside, render_classes, render_values


def _one(shape: int, scale: float, orientation: float, x: float, y: float, **kw) -> np.ndarray:
    """One rendered image ``(64, 64)`` of float factor values (float64 tensors)."""
    values = [torch.tensor([v], dtype=torch.float64) for v in (scale, orientation, x, y)]
    return render_values(torch.tensor([shape]), *values, **kw)[0].numpy()


def _box(image: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(image)
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


def test_factor_values_are_the_official_grid() -> None:
    shape, scale, orientation, pos_x, pos_y = sprites.factor_values()
    assert tuple(len(v) for v in (shape, scale, orientation, pos_x, pos_y)) == GRID
    np.testing.assert_array_equal(shape, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(scale, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(orientation[[0, -1]], [0.0, 2 * math.pi], rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.diff(orientation), 2 * math.pi / 39, rtol=1e-9)
    for pos in (pos_x, pos_y):
        np.testing.assert_allclose(pos, np.arange(32) / 31, rtol=0, atol=1e-12)


def test_shapes_are_closed_a_point_on_the_edge_is_inside() -> None:
    # Dyadic sizes: every coordinate below is exact, so "on the edge" is exactly on it.
    g = Geometry(
        square_half=2.5,
        ellipse_axes=(3.0, 2.0),
        heart_radius=2.0,
        heart_offset=1.0,
        heart_centre=-1.0,
        heart_angle=0.0,  # the V's sides vertical: its right side is the line w = d + r
    )

    def at(shape: int, u: float, v: float) -> bool:
        return bool(inside(shape, torch.tensor(u), torch.tensor(v), g))

    assert at(0, 2.5, -2.5) and at(0, -2.5, 1.0) and not at(0, 2.5, 2.625)
    assert at(1, 3.0, 0.0) and at(1, 0.0, -2.0) and not at(1, 3.0, 0.125)
    assert at(2, 1.0, -3.0) and at(2, -1.0, -3.0)  # the top of each disc
    assert not at(2, 1.0, -3.125)
    assert at(2, 3.0, 1.0) and at(2, -3.0, 4.0)  # the side below the discs (outside them)
    assert not at(2, 3.125, 1.0)


def test_an_unknown_shape_names_the_valid_ones() -> None:
    message = r"^unknown shape 3; valid: 0\.\.2 \(\('square', 'ellipse', 'heart'\)\)$"
    with pytest.raises(ValueError, match=message):
        inside(3, torch.zeros(1), torch.zeros(1), Geometry())


@pytest.mark.parametrize(
    "g",
    [Geometry(), Geometry(heart_radius=2.0, heart_offset=1.9, heart_centre=0.0)],
    ids=["fitted", "narrow-waist"],
)
def test_heart_is_two_discs_on_a_v_whose_sides_touch_them(g: Geometry) -> None:
    # Narrow waist: the axis leaves the discs 0.62 below their centres (fitted: 2.04).
    r, d, cy = g.heart_radius, g.heart_offset, g.heart_centre
    normal = torch.tensor([math.cos(g.heart_angle), math.sin(g.heart_angle)], dtype=torch.float64)
    nx, ny = normal.tolist()
    tip = torch.tensor([0.0, cy + (r + nx * d) / ny], dtype=torch.float64)  # sides meet there
    tangent = torch.tensor([d + r * nx, cy + r * ny], dtype=torch.float64)  # side meets disc

    def at(points: torch.Tensor) -> torch.Tensor:
        return inside(2, points[:, 0], points[:, 1], g)

    # Along the right side from the tangent point to the tip: just inside, just outside.
    f = torch.linspace(0.05, 0.95, 10, dtype=torch.float64)[:, None]
    side = tangent + f * (tip - tangent)
    assert bool(at(side - 0.05 * normal).all()) and not bool(at(side + 0.05 * normal).any())
    # The axis is filled from the discs' centres down to the tip, nothing below it.
    depth = torch.linspace(0.0, float(tip[1]) - cy - 0.05, 25, dtype=torch.float64)
    axis = torch.stack([torch.zeros_like(depth), cy + depth], dim=1)
    assert bool(at(axis).all()) and not bool(at(tip[None] + torch.tensor([0.0, 0.05])).any())
    # Beside a lobe, just below its centre, the edge is the disc's, not the V's.
    for dv in (0.1 * r, 0.3 * r, 0.5 * r):
        w = d + math.sqrt(r * r - dv * dv)
        points = torch.tensor([[w - 0.05, cy + dv], [w + 0.05, cy + dv]], dtype=torch.float64)
        assert at(points).tolist() == [True, False]
    # Symmetric: the left half mirrors the right one.
    mirrored = side * torch.tensor([-1.0, 1.0], dtype=torch.float64)
    assert bool(at(mirrored - 0.05 * normal * torch.tensor([-1.0, 1.0])).all())


def test_ellipse_extent_at_scale_one_and_a_quarter_turn_at_half_scale() -> None:
    # Centre (16, 16) at position 0; semi-axes 12.75 across, 7.25 down: columns with
    # |k + 0.5 - 16| <= 12.75 are 3..28, rows with |k + 0.5 - 16| <= 7.25 are 9..22.
    assert _box(_one(1, 1.0, 0.0, 0.0, 0.0)) == (9, 22, 3, 28)
    # Scale 0.5 turned a quarter: 6.375 down (rows 10..21), 3.625 across (columns 12..19).
    assert _box(_one(1, 0.5, math.pi / 2, 0.0, 0.0)) == (10, 21, 12, 19)


def test_a_square_turned_a_quarter_at_any_scale_is_the_same_square() -> None:
    # Half side 9.6 * 0.5 = 4.8 around 16: pixel centres 11.5..20.5, pixels 11..20, 10 x 10.
    upright = _one(0, 0.5, 0.0, 0.0, 0.0)
    assert _box(upright) == (11, 20, 11, 20) and upright.sum() == 100
    np.testing.assert_array_equal(_one(0, 0.5, math.pi / 2, 0.0, 0.0), upright)


def test_orientation_turns_counter_clockwise_on_screen() -> None:
    # The heart's tip points down at 0; a quarter turn counter-clockwise on screen (y down)
    # takes "down" to "right": the tip to the right, the (heavier) lobes to the left.
    centre = 16 + 32 * 0.5 - 0.5  # pixel index of the centre at position 0.5
    upright = np.argwhere(_one(2, 1.0, 0.0, 0.5, 0.5)).mean(axis=0)
    assert upright[0] < centre - 1 and upright[1] == pytest.approx(centre)  # lobes up
    turned = np.argwhere(_one(2, 1.0, math.pi / 2, 0.5, 0.5)).mean(axis=0)
    assert turned[1] < centre - 1 and turned[0] == pytest.approx(centre)  # lobes left
    # The ellipse turned by 45 degrees: its right end rises (up-right and down-left quadrants).
    rows, cols = np.nonzero(_one(1, 1.0, math.pi / 4, 0.5, 0.5))
    rising = np.sum((cols > centre) & (rows < centre)) + np.sum((cols < centre) & (rows > centre))
    falling = np.sum((cols > centre) & (rows > centre)) + np.sum((cols < centre) & (rows < centre))
    assert rising > 1.5 * falling  # 190 against 98 pixels


def test_positions_map_x_to_columns_and_y_to_rows_by_origin_and_travel() -> None:
    # Square of half side 9.6 * 0.5 = 4.8: centre 16 + 32 * 0.25 = 24 along x -> pixel
    # centres 19.5..28.5, columns 19..28; centre 16 + 32 * 0.75 = 40 along y -> rows 35..44.
    assert _box(_one(0, 0.5, 0.0, 0.25, 0.75)) == (35, 44, 19, 28)
    assert _box(_one(0, 0.5, 0.0, 1.0, 0.0)) == (11, 20, 43, 52)


def test_python_floats_are_taken_at_float64_precision() -> None:
    # 0.5 + 2**-30 and 1 - 2**-30 are exact in float64 and round to 0.5 and 1 in float32.
    # A square of half side 4.5 centred 2**-25 right of 32: the pixel centre 27.5 is just
    # outside (columns 28..36), 36.5 just inside; rows 27..36 (edges on 27.5 and 36.5).
    g = Geometry(square_half=4.5)
    image = render_values([0], [1.0], [0.0], [0.5 + 2**-30], [0.5], geometry=g)[0].numpy()
    assert _box(image) == (27, 36, 28, 36)
    # Scaled by 1 - 2**-30 around (32, 32): both edges fall just inside 27.5 and 36.5.
    image = render_values([0], [1 - 2**-30], [0.0], [0.5], [0.5], geometry=g)[0].numpy()
    assert _box(image) == (28, 35, 28, 35)


def test_render_classes_draws_with_the_geometry_it_is_given() -> None:
    # A square of half side 2.5 centred on (16.5, 16.5): pixel centres 14.5..18.5 are inside
    # (edges included), so rows and columns 14..18.
    g = Geometry(origin=16.5, square_half=2.5)
    image = render_classes(np.array([[0, 5, 0, 0, 0]]), geometry=g)[0].numpy()
    assert _box(image) == (14, 18, 14, 18) and image.sum() == 25
