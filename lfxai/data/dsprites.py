"""dSprites: 737,280 binary 64x64 sprites over a grid of five factors, cached bit-packed.

Layout under the data set's root (``<data_dir>/dsprites``):

- ``dsprites_64x64.packed``: uint8 rows ``(n, 512)``, each image's 4,096 pixels packed 8 per
  byte (``np.packbits``), in the official index order (``shape, scale, orientation, pos_x,
  pos_y``, ``pos_y`` fastest; see :mod:`lfxai.data.sprites`); 377 MB for the full grid.
- ``dsprites_64x64.json``: its metadata: where the images came from (``source``), the sha256
  of the packed file, the grid (``strides`` per factor: 1 for the full grid), the renderer's
  version for rendered images.
- optionally the official ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``.

Sources, in order: a valid cache; the official npz found in the root (md5 checked), or
downloaded from DeepMind's GitHub; otherwise the grid rendered procedurally (offline here).
A cache whose sha256, size or metadata do not match is reported and rebuilt (``repaired``)
as the grid its metadata records, so a sub-grid stays the same sub-grid; a damaged cache
without readable metadata is refused (its grid is unknown) unless it has the full grid's size.
The cache is only ever read through a read-only memory map, decoded per batch.

Length (~410 lines): the cache's three sources and its repair share one metadata format;
the renderer is :mod:`lfxai.data.sprites`, the bit-packed reader :mod:`lfxai.data.packed`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import tempfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from lfxai.data import sprites
from lfxai.data.packed import PackedImages, pack_images
from lfxai.data.provision import (
    DataUnavailable,
    Provisioned,
    atomic_write,
    atomic_write_bytes,
    sha256_file,
)
from lfxai.data.splits import Split

logger = logging.getLogger(__name__)

NPZ_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
NPZ_URL = f"https://github.com/google-deepmind/dsprites-dataset/raw/master/{NPZ_NAME}"
NPZ_MD5 = "7da33b31b13a06f4b04a70402ce90c2e"  # of the official file, as published
CACHE_NAME = "dsprites_64x64.packed"
META_NAME = "dsprites_64x64.json"
CACHE_FORMAT = 1
IMAGE_SHAPE = (1, sprites.IMAGE_SIDE, sprites.IMAGE_SIDE)
ROW_BYTES = sprites.IMAGE_SIDE * sprites.IMAGE_SIDE // 8
FULL_GRID = (1, 1, 1, 1, 1)
DOWNLOAD_TIMEOUT_S = 10.0
SPLITS = ("random",)
TEST_FRACTION = 0.1  # the paper's 90/10 split


def grid_classes(strides: tuple[int, ...] = FULL_GRID) -> np.ndarray:
    """Factor classes ``(n, 5)`` of the (strided) grid, in the official order.

    ``strides`` keeps every k-th class of each factor (1: all), e.g. ``(1, 5, 8, 4, 4)``
    keeps 3 shapes x 2 scales x 5 orientations x 8 x 8 positions.
    """
    if len(strides) != len(sprites.GRID) or min(strides) < 1:
        raise ValueError(f"strides must be 5 positive integers, got {strides}")
    axes = [np.arange(0, n, s) for n, s in zip(sprites.GRID, strides, strict=True)]
    mesh = np.meshgrid(*axes, indexing="ij")  # last axis fastest: the official order
    return np.stack([m.ravel() for m in mesh], axis=1)


@dataclass(frozen=True)
class DSprites:
    """The cached images with their factors.

    Attributes:
        images: all images, memory-mapped, decoded on indexing (``(n, 1, 64, 64)``).
        classes: factor classes ``(n, 5)`` int64 (order of ``sprites.FACTORS``).
        values: factor values ``(n, 5)`` float64 (shape 1..3, scale, radians, positions).
        source: where the images came from (the metadata's ``source``).
    """

    images: PackedImages
    classes: np.ndarray
    values: np.ndarray
    source: str


def _metadata(root: Path) -> dict | None:
    try:
        return json.loads((root / META_NAME).read_text())
    except (OSError, ValueError):
        return None


def cache_problem(root: Path) -> str | None:
    """Why the cache under ``root`` cannot be used (None: it is valid and current)."""
    cache, meta = root / CACHE_NAME, _metadata(root)
    if not cache.is_file() and meta is None:
        return "missing"
    if meta is None:
        return f"{root / META_NAME}: missing or unreadable"
    if not cache.is_file():
        return f"{cache}: missing"
    strides = tuple(meta.get("strides", ()))
    try:
        n = len(grid_classes(strides))
    except ValueError as error:
        return f"{root / META_NAME}: {error}"
    expected = {"format": CACHE_FORMAT, "n_images": n, "row_bytes": ROW_BYTES}
    for key, value in expected.items():
        if meta.get(key) != value:
            return f"{root / META_NAME}: {key} is {meta.get(key)!r}, expected {value!r}"
    if meta.get("renderer_version") not in (None, sprites.RENDERER_VERSION):
        version = meta["renderer_version"]
        return f"{cache}: rendered by renderer v{version}, now v{sprites.RENDERER_VERSION}"
    size = cache.stat().st_size
    if size != n * ROW_BYTES:
        return f"{cache}: {size} bytes, expected {n * ROW_BYTES} ({n} images)"
    if meta.get("sha256") is None:
        return f"{cache}: its writing did not finish (no sha256 in {META_NAME})"
    found = sha256_file(cache)
    if found != meta["sha256"]:
        return f"{cache}: sha256 {found}, expected {meta['sha256']} (metadata)"
    return None


def recorded_strides(root: Path) -> tuple[int, ...] | None:
    """The grid the metadata under ``root`` records, or None.

    Valid cache or not, the cache was meant to hold that grid; None when the metadata is missing,
    unreadable or names no valid grid.
    """
    meta = _metadata(root)
    if not isinstance(meta, dict):
        return None
    strides = meta.get("strides")
    try:
        strides = tuple(int(k) for k in strides)
        grid_classes(strides)
    except (TypeError, ValueError):
        return None
    return strides


def grid_size(root: str | Path) -> int:
    """Images of the grid the runs on ``root`` see.

    The recorded grid (a valid cache, or the one a damaged cache is rebuilt as), else the full grid
    (what provisioning builds).
    """
    strides = recorded_strides(Path(root))
    return len(grid_classes(FULL_GRID if strides is None else strides))


def split_sizes(n_images: int) -> tuple[int, int]:
    """Train and test sizes of the random 90/10 split of ``n_images`` images."""
    n_test = max(1, round(n_images * TEST_FRACTION))
    return n_images - n_test, n_test


def _write_cache(root: Path, blocks, n_blocks: int, meta: dict) -> None:
    """Writes packed image blocks to the cache, then its metadata, each atomically.

    Metadata without a sha256 comes first: no metadata may vouch for a half-new cache, yet
    an interrupted write still records which grid was meant, so a repair rebuilds that grid.
    """
    digest = hashlib.sha256()
    atomic_write_bytes(root / META_NAME, json.dumps({**meta, "sha256": None}, indent=1).encode())
    with atomic_write(root / CACHE_NAME) as handle:
        for block in tqdm(blocks, total=n_blocks, desc="dsprites cache", unit="block"):
            data = pack_images(block).tobytes()
            digest.update(data)
            handle.write(data)
    meta = {
        **meta,
        "sha256": digest.hexdigest(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_bytes(root / META_NAME, json.dumps(meta, indent=1).encode())


def _base_meta(strides: tuple[int, ...], source: str) -> dict:
    return {
        "format": CACHE_FORMAT,
        "source": source,
        "strides": list(strides),
        "n_images": len(grid_classes(strides)),
        "row_bytes": ROW_BYTES,
        "image_shape": list(IMAGE_SHAPE),
        "factors": list(sprites.FACTORS),
        "packing": "np.packbits of each image's 64*64 pixels (row-major, big-endian bits)",
    }


def render_cache(root: Path, strides: tuple[int, ...] = FULL_GRID) -> str:
    """Renders the (strided) grid into the cache; returns the source recorded."""
    classes = grid_classes(strides)
    triples, starts = np.unique(classes[:, :3], axis=0, return_index=True)
    bounds = [*sorted(starts), len(classes)]
    source = f"rendered (lfxai renderer v{sprites.RENDERER_VERSION})"
    if strides != FULL_GRID:
        source += f", sub-grid strides {list(strides)}"
    # The grid's order keeps each (shape, scale, orientation) triple contiguous: one block each.
    blocks = (
        sprites.render_classes(classes[start:stop])
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True)
    )
    meta = _base_meta(strides, source) | {"renderer_version": sprites.RENDERER_VERSION}
    _write_cache(root, blocks, len(triples), meta)
    return source


def _npz_blocks(path: Path, n: int, chunk: int = 8192):
    """The npz's ``imgs`` in chunks, streamed from the zip (never 3 GB at once)."""
    with zipfile.ZipFile(path) as archive, archive.open("imgs.npy") as stream:
        version = np.lib.format.read_magic(stream)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(stream)
        if shape != (n, sprites.IMAGE_SIDE, sprites.IMAGE_SIDE) or fortran or dtype != np.uint8:
            raise ValueError(f"imgs is {shape} {dtype} (fortran={fortran}), expected ({n}, 64, 64)")
        for start in range(0, n, chunk):
            rows = min(chunk, n - start)
            data = stream.read(rows * sprites.IMAGE_SIDE * sprites.IMAGE_SIDE)
            images = np.frombuffer(data, dtype=np.uint8).reshape(rows, -1)
            if images.max(initial=0) > 1:
                raise ValueError("imgs holds values other than 0 and 1")
            yield images


def check_npz(path: Path, strides: tuple[int, ...] = FULL_GRID, md5: str | None = NPZ_MD5) -> None:
    """Raises ValueError unless ``path`` is the official npz (md5, keys, factor order)."""
    if md5 is not None:
        found = hashlib.md5(path.read_bytes()).hexdigest()
        if found != md5:
            raise ValueError(f"{path}: md5 {found}, expected {md5}")
    with np.load(path, allow_pickle=False) as npz:  # `metadata` (a pickle) is never read
        classes = npz["latents_classes"]
    expected = grid_classes(strides)
    if classes.shape != (len(expected), 6) or not np.array_equal(classes[:, 1:], expected):
        raise ValueError(f"{path}: latents_classes {classes.shape} are not the official grid")


def convert_npz(
    root: Path, path: Path, strides: tuple[int, ...] = FULL_GRID, md5: str | None = NPZ_MD5
) -> str:
    """Checks the npz (:func:`check_npz`) and packs its images into the cache."""
    check_npz(path, strides, md5)
    n = len(grid_classes(strides))
    chunk = 8192
    source = f"official npz {path.name} (md5 {hashlib.md5(path.read_bytes()).hexdigest()})"
    _write_cache(root, _npz_blocks(path, n, chunk), -(-n // chunk), _base_meta(strides, source))
    return source


def download_npz(root: Path, md5: str | None) -> Path:
    """Downloads the official npz into ``root``; moved into place only if its md5 matches.

    Raises:
        OSError: offline or the server failed. ValueError: another file was served.
    """
    target = root / NPZ_NAME
    root.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5()
    with tempfile.NamedTemporaryFile(dir=root, prefix=".npz-", delete=False) as tmp:
        try:
            with urllib.request.urlopen(NPZ_URL, timeout=DOWNLOAD_TIMEOUT_S) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    tmp.write(chunk)
            tmp.close()
            if md5 is not None and digest.hexdigest() != md5:
                raise ValueError(f"{NPZ_URL} served md5 {digest.hexdigest()}, expected {md5}")
            Path(tmp.name).replace(target)
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    return target


def provision_dsprites(
    root: str | Path, download: bool = True, strides: tuple[int, ...] | None = None
) -> Provisioned:
    """Makes sure a valid dSprites cache is under ``root``.

    Args:
        root: the data set's folder (``<data_dir>/dsprites``).
        download: try DeepMind's GitHub for the official npz when it is not in ``root``.
        strides: the grid to build when the cache must be (re)built (None: the grid the
            metadata records for a damaged cache, the full grid when there is none); a valid
            cache is used as it is, whatever its grid (its source says so).

    Returns:
        The root, the source (``cache: <how it was made>`` when already there) and, when a
        cache or npz was found invalid, one line saying what and why.

    Raises:
        DataUnavailable: a damaged cache whose metadata is gone, so its grid is unknown; a
            cache that must be built where nothing can be written.
    """
    root = Path(root)
    problem = cache_problem(root)
    if problem is None:
        meta = _metadata(root)
        if strides is None and tuple(meta["strides"]) != FULL_GRID:
            logger.warning("%s holds a sub-grid of %d images only", root, meta["n_images"])
        return Provisioned(root, f"cache: {meta['source']}")
    if strides is None and problem != "missing":
        # A damaged cache is rebuilt as the grid it was meant to hold: a sub-grid stays one.
        strides = recorded_strides(root)
        cache = root / CACHE_NAME
        full_size = len(grid_classes(FULL_GRID)) * ROW_BYTES
        if strides is None and cache.is_file() and cache.stat().st_size == full_size:
            strides = FULL_GRID  # only the full grid has that size: its metadata is all it lost
        if strides is None and cache.is_file():
            raise DataUnavailable(
                f"dSprites cache under {root} is not usable ({problem}) and its metadata does "
                "not say which grid it holds, so it cannot be rebuilt as the same data; to "
                f"fix: delete {root / CACHE_NAME} to rebuild the full grid (`python -m "
                f"lfxai provision dsprites --data_dir {root.parent}`), or rebuild the "
                "sub-grid you meant with lfxai.data.dsprites.provision_dsprites(root, "
                "strides=...)"
            )
    repaired = [] if problem == "missing" else [f"{problem}; rebuilt"]
    if repaired:
        logger.warning("dSprites cache invalid, rebuilding: %s", problem)
    strides = FULL_GRID if strides is None else tuple(strides)
    try:
        return _build(root, download, strides, repaired)
    except OSError as error:  # e.g. a read-only data folder, or a file where the root goes
        raise DataUnavailable(
            f"dSprites cache under {root} cannot be written ({error}) and is not usable "
            f"({problem}); to fix: choose a writable data_dir, or provision this one where it "
            f"is writable (`python -m lfxai provision dsprites --data_dir {root.parent}`)"
        ) from None


def _build(
    root: Path, download: bool, strides: tuple[int, ...], repaired: list[str]
) -> Provisioned:
    """Builds the cache of ``strides``: from the official npz when usable, else rendered."""
    root.mkdir(parents=True, exist_ok=True)
    npz = root / NPZ_NAME
    if not npz.is_file() and download and strides == FULL_GRID:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            download_npz(root, NPZ_MD5)
        except (OSError, ValueError) as error:  # offline, or another file was served
            logger.warning("official dSprites npz not obtained (%s): rendering the grid", error)
        finally:
            socket.setdefaulttimeout(previous)
    if npz.is_file():
        try:
            source = convert_npz(root, npz, strides, NPZ_MD5)
            return Provisioned(root, source, tuple(repaired))
        except (ValueError, OSError, KeyError, zipfile.BadZipFile) as error:
            logger.warning("%s is not the official dSprites npz: %s", npz, error)
            repaired.append(f"{npz}: {error}; not used, rendered instead")
    return Provisioned(root, render_cache(root, strides), tuple(repaired))


def load_dsprites(root: str | Path) -> DSprites:
    """The provisioned cache (see :func:`provision_dsprites`), memory-mapped read-only."""
    root = Path(root)
    meta = _metadata(root)
    if meta is None or not (root / CACHE_NAME).is_file():
        raise DataUnavailable(f"no dSprites cache under {root}: run provision_dsprites first")
    classes = grid_classes(tuple(meta["strides"]))
    packed = np.memmap(root / CACHE_NAME, dtype=np.uint8, mode="r", shape=(len(classes), ROW_BYTES))
    images = PackedImages(packed, IMAGE_SHAPE)
    return DSprites(images, classes, sprites.values_of(classes), meta["source"])


def dsprites_splits(
    root: str | Path, split: str, seed: int, n_train: int | None, n_test: int | None
) -> tuple[Split, Split]:
    """The paper's seeded random 90/10 split; prefixes of ``n_train`` / ``n_test`` images.

    Returns:
        Train and test splits; ``x`` decodes ``(n, 1, 64, 64)`` float images on indexing,
        ``y`` holds the factor classes ``(n, 5)`` (int64).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown dSprites split {split!r}; valid choices: {list(SPLITS)}")
    data = load_dsprites(root)
    n = len(data.classes)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    _, n_test_all = split_sizes(n)
    parts = {"train": order[n_test_all:], "test": order[:n_test_all]}
    for role, size in (("train", n_train), ("test", n_test)):
        if size is not None:
            if not 0 < size <= len(parts[role]):
                raise ValueError(f"n_{role} must be in 1..{len(parts[role])}, got {size}")
            parts[role] = parts[role][:size]
    classes = torch.from_numpy(data.classes)
    train, test = (
        Split(data.images.select(parts[r]), classes[parts[r]]) for r in ("train", "test")
    )
    return train, test
