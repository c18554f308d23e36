"""How close the rendered dSprites are to real frames: area, bounding box and IoU per shape.

Run from the repository root::

    python -m benchmarks.compare_dsprites path/to/dsprites-reference.gif [--stride 1]

The GIF holds real 64x64 dSprites frames whose factor values are unknown here. For each frame
the closest official factor classes are searched: every shape, scale and orientation, at the
positions within ``--window`` classes of the one its bounding box's centre suggests, then the
20 best of those at positions within 3 classes; the rendering with the highest IoU is the
match. Per matched shape we report the reference's and
our mean pixel area and bounding box, and the IoU (mean and worst).
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageSequence

from lfxai.data import sprites


def read_frames(path: Path) -> np.ndarray:
    """The GIF's frames as bool images ``(n, 64, 64)`` (white = sprite)."""
    with Image.open(path) as gif:
        frames = [np.array(frame.convert("L")) > 127 for frame in ImageSequence.Iterator(gif)]
    frames = np.stack(frames)
    if frames.shape[1:] != (sprites.IMAGE_SIDE, sprites.IMAGE_SIDE):
        raise ValueError(f"{path}: frames are {frames.shape[1:]}, expected 64 x 64")
    return frames


def boxes(images: np.ndarray) -> np.ndarray:
    """Bounding boxes ``(n, 4)``: first row, last row, first column, last column (-1: empty)."""
    rows, cols = images.any(axis=2), images.any(axis=1)

    def ends(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        first = np.where(mask.any(axis=1), mask.argmax(axis=1), -1)
        last = np.where(mask.any(axis=1), mask.shape[1] - 1 - mask[:, ::-1].argmax(axis=1), -1)
        return first, last

    (r0, r1), (c0, c1) = ends(rows), ends(cols)
    return np.stack([r0, r1, c0, c1], axis=1)


def position_guess(frame: np.ndarray) -> tuple[int, int]:
    """The position classes (x, y) that the centre of the frame's bounding box suggests."""
    r0, r1, c0, c1 = boxes(frame[None])[0]
    geometry, n = sprites.Geometry(), sprites.GRID[3]
    return tuple(
        round((centre + 0.5 - geometry.origin) / geometry.travel * (n - 1))
        for centre in ((c0 + c1) / 2, (r0 + r1) / 2)
    )


@functools.lru_cache(maxsize=4)
def candidates(guess: tuple[int, int], window: int) -> tuple[np.ndarray, torch.Tensor]:
    """Factor classes ``(m, 5)`` worth trying near a position, and their renderings.

    Cached: consecutive frames of a traversal often share their position guess.
    """
    n = sprites.GRID[3]
    near = [np.unique(np.clip(np.arange(g - window, g + window + 1), 0, n - 1)) for g in guess]
    mesh = np.meshgrid(*[np.arange(k) for k in sprites.GRID[:3]], *near, indexing="ij")
    classes = np.stack([m.ravel() for m in mesh], axis=1)
    return classes, sprites.render_classes(classes).reshape(len(classes), -1)


def best_match(
    frame: np.ndarray, window: int, refine: int = 3, keep: int = 20
) -> tuple[np.ndarray, np.ndarray, float]:
    """The closest factor classes, their rendering and its IoU with ``frame``.

    First every shape, scale and orientation near the guessed position (``window``); then the
    ``keep`` best of those at every position within ``refine`` classes of the guess (a
    turned heart's bounding box is off its centre by up to two classes).
    """
    target = torch.from_numpy(frame.reshape(-1))
    guess = position_guess(frame)
    classes, rendered = candidates(guess, window)
    iou = _iou(rendered, target)
    order = iou.argsort(descending=True).numpy()
    _, first = np.unique(classes[order, :3], axis=0, return_index=True)
    triples = classes[order[np.sort(first)[:keep]], :3]
    n = sprites.GRID[3]
    near = [np.unique(np.clip(np.arange(g - refine, g + refine + 1), 0, n - 1)) for g in guess]
    xs, ys = np.meshgrid(*near, indexing="ij")
    positions = np.stack([xs.ravel(), ys.ravel()], axis=1)
    wide = np.concatenate(
        [np.repeat(triples, len(positions), axis=0), np.tile(positions, (len(triples), 1))], 1
    )
    wide_rendered = sprites.render_classes(wide).reshape(len(wide), -1)
    wide_iou = _iou(wide_rendered, target)
    best = int(wide_iou.argmax())
    image = wide_rendered[best].reshape(frame.shape).numpy()
    return wide[best], image, float(wide_iou[best])


def _iou(rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    inter = (rendered & target).sum(dim=1)
    union = (rendered | target).sum(dim=1).clamp(min=1)
    return inter.double() / union.double()


def compare(frames: np.ndarray, window: int) -> list[dict[str, float | str]]:
    """One summary per matched shape: areas, boxes (height, width) and IoU."""
    matches = [best_match(frame, window) for frame in frames]
    classes = np.stack([m[0] for m in matches])
    ours = np.stack([m[1] for m in matches])
    ious = np.array([m[2] for m in matches])
    rows = []
    for shape, name in enumerate(sprites.SHAPES):
        chosen = classes[:, 0] == shape
        if not chosen.any():
            continue
        ref_box, our_box = boxes(frames[chosen]), boxes(ours[chosen])
        size = lambda b: np.stack([b[:, 1] - b[:, 0] + 1, b[:, 3] - b[:, 2] + 1], 1)  # noqa: E731
        rows.append(
            {
                "shape": name,
                "frames": int(chosen.sum()),
                "ref_area": float(frames[chosen].sum(axis=(1, 2)).mean()),
                "our_area": float(ours[chosen].sum(axis=(1, 2)).mean()),
                "ref_box_hw": size(ref_box).mean(axis=0).round(2).tolist(),
                "our_box_hw": size(our_box).mean(axis=0).round(2).tolist(),
                "box_edges_off": float(np.abs(ref_box - our_box).mean()),
                "iou_mean": float(ious[chosen].mean()),
                "iou_min": float(ious[chosen].min()),
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> list[dict[str, float | str]]:
    """Parses the command line, compares the shapes, prints one row per shape; the rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("gif", type=Path, help="GIF of real 64x64 dSprites frames")
    parser.add_argument("--stride", type=int, default=1, help="use every k-th frame")
    parser.add_argument("--window", type=int, default=1, help="position classes searched")
    args = parser.parse_args(argv)
    frames = read_frames(args.gif)[:: args.stride]
    rows = compare(frames, args.window)
    print(f"{len(frames)} reference frames from {args.gif}; geometry {sprites.Geometry()}")
    print(
        f"{'shape':8} {'frames':>6} {'area ref':>9} {'ours':>7} {'box h,w ref':>14} "
        f"{'ours':>14} {'edge px off':>11} {'IoU mean':>8} {'min':>6}"
    )
    for r in rows:
        ref_box = ",".join(f"{v:.1f}" for v in r["ref_box_hw"])
        our_box = ",".join(f"{v:.1f}" for v in r["our_box_hw"])
        print(
            f"{r['shape']:8} {r['frames']:>6} {r['ref_area']:>9.1f} {r['our_area']:>7.1f} "
            f"{ref_box:>14} {our_box:>14} {r['box_edges_off']:>11.2f} "
            f"{r['iou_mean']:>8.3f} {r['iou_min']:>6.3f}"
        )
    return rows


if __name__ == "__main__":
    main()
