"""dSprites: factor order, rendered geometry, the packed cache and its repair, the npz path.

Everything runs on strided sub-grids (a few thousand images): the full 737,280-image grid is
never rendered here.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from lfxai.cli.data import main
from lfxai.data import dsprites, sprites
from lfxai.data.packed import PackedImages, pack_images
from lfxai.data.provision import Provisioned
from lfxai.data.splits import Split
from lfxai.plugins import DATASETS

SMALL = (1, 5, 8, 4, 4)  # 3 shapes x 2 scales x 5 orientations x 8 x 8 positions = 1,920


def test_index_order_is_the_official_one() -> None:
    # posY fastest, then posX, orientation, scale, shape.
    index = np.array([0, 1, 32, 1024, 40 * 1024, 6 * 40 * 1024, 737_279])
    expected = [
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1],
        [0, 0, 0, 1, 0],
        [0, 0, 1, 0, 0],
        [0, 1, 0, 0, 0],
        [1, 0, 0, 0, 0],
        [2, 5, 39, 31, 31],
    ]
    np.testing.assert_array_equal(sprites.classes_of(index), expected)
    np.testing.assert_array_equal(sprites.index_of(sprites.classes_of(index)), index)
    full = dsprites.grid_classes()
    assert full.shape == (737_280, 5)
    np.testing.assert_array_equal(full[index], expected)
    values = sprites.values_of(np.array(expected))
    np.testing.assert_allclose(values[-1], [3.0, 1.0, 2 * math.pi, 1.0, 1.0])
    np.testing.assert_allclose(values[4], [1.0, 0.6, 0.0, 0.0, 0.0])
    small = dsprites.grid_classes(SMALL)
    assert len(small) == 1920
    np.testing.assert_array_equal(small[:3, 4], [0, 4, 8])  # strided, still posY fastest
    np.testing.assert_array_equal(full[sprites.index_of(small)], small)


def _image(shape: int, scale: int, orientation: int, x: int, y: int) -> np.ndarray:
    return sprites.render_classes(np.array([[shape, scale, orientation, x, y]]))[0].numpy()


def test_square_at_the_origin_covers_the_expected_pixels() -> None:
    # Side 0.3 x 64 = 19.2 pixels centred on (16, 16): pixel centres 6.5..25.5, 20 x 20.
    image = _image(0, 5, 0, 0, 0)
    rows, cols = np.nonzero(image)
    assert image.sum() == 400
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (6, 25, 6, 25)
    assert _image(0, 0, 0, 0, 0).sum() == 100  # scale 0.5: 10 x 10


def test_positions_move_the_centroid_along_their_own_axis() -> None:
    for shape in range(3):
        base = np.argwhere(_image(shape, 3, 7, 4, 9)).mean(axis=0)
        moved_x = np.argwhere(_image(shape, 3, 7, 20, 9)).mean(axis=0)
        moved_y = np.argwhere(_image(shape, 3, 7, 4, 25)).mean(axis=0)
        step = 32 / 31 * 16  # 16 classes of 32/31 pixels each
        np.testing.assert_allclose(moved_x - base, [0.0, step], atol=0.6)
        np.testing.assert_allclose(moved_y - base, [step, 0.0], atol=0.6)


def test_orientation_and_shape_geometry() -> None:
    # 0 and 2 pi are both on the official grid and draw the same sprite.
    for shape in range(3):
        np.testing.assert_array_equal(_image(shape, 5, 0, 10, 10), _image(shape, 5, 39, 10, 10))
    ellipse = np.argwhere(_image(1, 5, 0, 10, 10))
    height, width = ellipse.max(axis=0) - ellipse.min(axis=0) + 1
    assert width > 1.5 * height  # horizontal at orientation 0
    heart = _image(2, 5, 0, 10, 10)
    centre = 16 + 32 * 10 / 31 - 0.5  # pixel index of the sprite centre
    assert np.argwhere(heart).mean(axis=0)[0] < centre - 1  # lobes up, tip down
    # The notch: the middle column starts lower than a lobe's column.
    assert heart[:, int(centre)].argmax() > heart[:, int(centre) - 4].argmax() + 1
    # Turned a quarter turn (10 of 39 steps is 92 degrees), the square is axis-aligned again.
    square = _image(0, 5, 10, 10, 10)
    assert abs(int(square.sum()) - 400) <= 40


def test_pack_roundtrip_and_lazy_selection() -> None:
    images = sprites.render_classes(dsprites.grid_classes(SMALL)[:50]).numpy()
    packed = PackedImages(pack_images(images), (1, 64, 64))
    assert packed.shape == (50, 1, 64, 64) and len(packed) == 50
    np.testing.assert_array_equal(packed[torch.arange(50)].numpy()[:, 0], images)
    chosen = packed.select(torch.tensor([7, 3, 41]))
    assert chosen.packed is packed.packed  # nothing decoded or copied
    np.testing.assert_array_equal(chosen[1:].numpy()[:, 0], images[[3, 41]])
    np.testing.assert_array_equal(chosen[-1].numpy()[0], images[41])
    assert chosen.to("cpu") is chosen
    split = Split(packed, torch.arange(50)).subset(torch.tensor([2, 4]))
    assert isinstance(split.x, PackedImages) and split.y.tolist() == [2, 4]
    with pytest.raises(IndexError):
        packed[torch.tensor([50])]
    # Rows held as a tensor (what `to("cuda")` makes) decode the same, on their device.
    on_tensor = PackedImages(torch.from_numpy(pack_images(images)), (1, 64, 64))
    chosen_tensor = on_tensor.select(torch.tensor([7, 3, 41]))
    np.testing.assert_array_equal(chosen_tensor[1:].numpy()[:, 0], images[[3, 41]])
    assert [len(c) for c in chosen_tensor.split(2)] == [2, 1]
    moved = chosen.to("meta")  # any non-CPU device: the selected rows are gathered and moved
    assert moved.device.type == "meta" and moved.rows is None and len(moved) == 3


def _provision(root: Path, **kwargs) -> Provisioned:
    return dsprites.provision_dsprites(root, download=False, strides=SMALL, **kwargs)


def test_cache_is_rendered_once_then_reused(tmp_path: Path) -> None:
    root = tmp_path / "dsprites"
    first = _provision(root)
    assert first.source.startswith("rendered (lfxai renderer v1), sub-grid")
    assert first.repaired == ()
    meta = json.loads((root / dsprites.META_NAME).read_text())
    assert meta["n_images"] == 1920 and meta["strides"] == list(SMALL)
    assert (root / dsprites.CACHE_NAME).stat().st_size == 1920 * 512
    assert sorted(p.name for p in root.iterdir()) == [dsprites.META_NAME, dsprites.CACHE_NAME]
    again = _provision(root)
    assert again.source == f"cache: {first.source}" and again.repaired == ()
    data = dsprites.load_dsprites(root)
    assert isinstance(data.images.packed, np.memmap) and data.images.packed.mode == "r"
    expected = sprites.render_classes(data.classes[::97]).float()
    np.testing.assert_array_equal(data.images[np.arange(0, 1920, 97)][:, 0], expected)


@pytest.mark.parametrize("damage", ["flip", "truncate", "drop_meta", "meta_lies"])
def test_a_damaged_cache_is_detected_and_rebuilt(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "dsprites"
    _provision(root)
    cache, meta = root / dsprites.CACHE_NAME, root / dsprites.META_NAME
    good = cache.read_bytes()
    if damage == "flip":
        data = bytearray(good)
        data[12345] ^= 0xFF
        cache.write_bytes(bytes(data))
    elif damage == "truncate":
        cache.write_bytes(good[:-512])
    elif damage == "drop_meta":
        meta.unlink()
    else:
        record = json.loads(meta.read_text())
        record["n_images"] = 737_280
        meta.write_text(json.dumps(record))
    assert dsprites.cache_problem(root) is not None
    result = _provision(root)
    assert len(result.repaired) == 1 and result.repaired[0].endswith("rebuilt")
    assert {"flip": "sha256", "truncate": "bytes", "drop_meta": "missing"}.get(
        damage, "n_images"
    ) in result.repaired[0]
    assert cache.read_bytes() == good
    assert dsprites.cache_problem(root) is None


def test_an_interrupted_render_leaves_no_cache(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "dsprites"
    calls = {"n": 0}
    real = sprites.render_classes

    def failing(classes, geometry=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # e.g. Ctrl-C half way
        return real(classes, geometry)

    monkeypatch.setattr(sprites, "render_classes", failing)
    with pytest.raises(KeyboardInterrupt):
        _provision(root)
    # No partial cache, no temp file; the metadata vouches for nothing (no sha256) but says
    # which grid was meant, so the next provisioning, asked for no grid, builds that one.
    assert [p.name for p in root.iterdir()] == [dsprites.META_NAME]
    meta = json.loads((root / dsprites.META_NAME).read_text())
    assert meta["sha256"] is None and meta["strides"] == list(SMALL)
    assert dsprites.grid_size(root) == 1920
    monkeypatch.setattr(sprites, "render_classes", real)
    result = dsprites.provision_dsprites(root, download=False)
    assert result.source.startswith("rendered") and "sub-grid strides [1, 5, 8, 4, 4]" in (
        result.source
    )
    assert dsprites.cache_problem(root) is None


def _official_npz(strides: tuple[int, ...], images: np.ndarray | None = None) -> bytes:
    """An npz in the official key layout (colour column first, pickled metadata)."""
    classes = dsprites.grid_classes(strides)
    if images is None:
        images = sprites.render_classes(classes).numpy()
    full = np.concatenate([np.zeros((len(classes), 1), dtype=np.int64), classes], axis=1)
    values = np.concatenate([np.ones((len(classes), 1)), sprites.values_of(classes)], axis=1)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        imgs=images.astype(np.uint8),
        latents_classes=full,
        latents_values=values,
        metadata=np.array({"description": "test"}, dtype=object),
    )
    return buffer.getvalue()


def test_the_official_npz_is_used_when_its_md5_matches(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "dsprites"
    root.mkdir()
    # Different pixels from the renderer's, so the test sees which source was packed.
    images = np.zeros((1920, 64, 64), dtype=np.uint8)
    images[np.arange(1920), np.arange(1920) % 64, 5] = 1
    content = _official_npz(SMALL, images)
    (root / dsprites.NPZ_NAME).write_bytes(content)
    monkeypatch.setattr(dsprites, "NPZ_MD5", hashlib.md5(content).hexdigest())
    result = _provision(root)
    assert result.source.startswith(f"official npz {dsprites.NPZ_NAME}") and result.repaired == ()
    assert result.path == root and dsprites.load_dsprites(root).source == result.source
    decoded = dsprites.load_dsprites(root).images[torch.arange(1920)][:, 0].numpy()
    np.testing.assert_array_equal(decoded, images)


def test_a_wrong_npz_is_refused_and_the_grid_rendered(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "dsprites"
    root.mkdir()
    content = _official_npz(SMALL)
    (root / dsprites.NPZ_NAME).write_bytes(content)
    result = _provision(root)  # the official md5 does not match this file
    assert result.source.startswith("rendered")
    assert "md5" in result.repaired[0] and "not used" in result.repaired[0]
    # Right md5 but images in another order: the classes check refuses it too.
    (root / dsprites.CACHE_NAME).unlink()
    shuffled = _official_npz((1, 5, 8, 4, 2))  # another grid: 3,840 rows
    (root / dsprites.NPZ_NAME).write_bytes(shuffled)
    monkeypatch.setattr(dsprites, "NPZ_MD5", hashlib.md5(shuffled).hexdigest())
    result = _provision(root)
    assert result.source.startswith("rendered") and "latents_classes" in result.repaired[-1]


def test_download_is_used_online_and_rendering_offline(tmp_path: Path, monkeypatch) -> None:
    content = _official_npz(SMALL)
    monkeypatch.setattr(dsprites, "NPZ_MD5", hashlib.md5(content).hexdigest())
    monkeypatch.setattr(dsprites, "FULL_GRID", SMALL)  # downloads happen for the full grid

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *args):
            return False

    urls = []

    def online(url, timeout):
        urls.append(url)
        return Response(content)

    monkeypatch.setattr(urllib.request, "urlopen", online)
    root = tmp_path / "online"
    result = dsprites.provision_dsprites(root, strides=SMALL)
    assert urls == [dsprites.NPZ_URL] and result.source.startswith("official npz")

    monkeypatch.setattr(dsprites, "NPZ_MD5", "0" * 32)  # the server sends another file
    result = dsprites.provision_dsprites(tmp_path / "tampered", strides=SMALL)
    assert result.source.startswith("rendered")
    assert not (tmp_path / "tampered" / dsprites.NPZ_NAME).exists()

    def offline(url, timeout):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    result = dsprites.provision_dsprites(tmp_path / "offline", strides=SMALL)
    assert result.source.startswith("rendered") and result.repaired == ()
    assert not (tmp_path / "offline" / dsprites.NPZ_NAME).exists()


def test_random_split_is_seeded_disjoint_and_carries_the_factors(tmp_path: Path) -> None:
    root = tmp_path / "dsprites"
    _provision(root)
    train, test = dsprites.dsprites_splits(root, "random", 3, None, None)
    assert (len(train), len(test)) == (1728, 192)
    assert isinstance(train.x, PackedImages) and train.y.shape == (1728, 5)
    rows = torch.cat([train.x.rows, test.x.rows])
    assert sorted(rows.tolist()) == list(range(1920))
    np.testing.assert_array_equal(test.y.numpy(), dsprites.grid_classes(SMALL)[test.x.rows])
    again, _ = dsprites.dsprites_splits(root, "random", 3, 100, None)
    assert torch.equal(again.x.rows, train.x.rows[:100])
    other, _ = dsprites.dsprites_splits(root, "random", 4, 100, None)
    assert not torch.equal(other.x.rows, again.x.rows)
    with pytest.raises(ValueError, match="valid choices"):
        dsprites.dsprites_splits(root, "standard", 3, None, None)
    with pytest.raises(ValueError, match="n_test"):
        dsprites.dsprites_splits(root, "random", 3, None, 193)


def test_command_line_provisions_dsprites(tmp_path: Path, monkeypatch, capsys) -> None:
    plugin = DATASETS["dsprites"]
    monkeypatch.setattr(  # a small grid, rendered: no download
        plugin, "provision_root", lambda root: dsprites.provision_dsprites(root, False, SMALL)
    )
    assert main(["provision", "dsprites", "--data_dir", str(tmp_path)]) == 0
    assert "dsprites:" in capsys.readouterr().out
    assert dsprites.cache_problem(tmp_path / "dsprites") is None


class _Payload:
    """Unpickling it would create ``marker``: what a hostile npz's object array holds."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_an_npz_whose_arrays_are_pickles_is_refused_unread(tmp_path: Path) -> None:
    """``latents_classes`` as an object array (a pickle) is never unpickled."""
    marker = tmp_path / "marker"
    path = tmp_path / dsprites.NPZ_NAME
    hostile = np.empty(1, dtype=object)
    hostile[0] = _Payload(marker)
    np.savez(path, imgs=np.zeros((1, 64, 64), np.uint8), latents_classes=hostile)
    with pytest.raises(ValueError, match="allow_pickle=False"):
        dsprites.check_npz(path, SMALL, md5=None)
    assert not marker.exists()


def _npz_with_images(path: Path, images: np.ndarray) -> None:
    np.savez(path, imgs=images, latents_classes=np.zeros((1, 6), np.int64))


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((5, 64, 64), np.uint16), r"imgs is \(5, 64, 64\) uint16 \(fortran=False\)"),
        (np.zeros((4, 64, 64), np.uint8), r"imgs is \(4, 64, 64\) uint8 .*expected \(5, 64, 64\)"),
        (np.asfortranarray(np.zeros((5, 64, 64), np.uint8)), r"\(fortran=True\)"),
        (np.full((5, 64, 64), 2, np.uint8), "imgs holds values other than 0 and 1"),
    ],
)
def test_npz_images_of_another_form_are_refused(images, message, tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    _npz_with_images(path, images)
    with pytest.raises(ValueError, match=message):
        list(dsprites._npz_blocks(path, 5, chunk=2))  # noqa: SLF001


def test_npz_images_stream_in_chunks_whatever_the_remainder(tmp_path: Path) -> None:
    images = (np.random.default_rng(0).random((7, 64, 64)) < 0.5).astype(np.uint8)
    images[6] = 1  # the last image, alone in its chunk: all ones
    path = tmp_path / "x.npz"
    _npz_with_images(path, images)
    blocks = list(dsprites._npz_blocks(path, 7, chunk=3))  # noqa: SLF001
    assert [len(b) for b in blocks] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(blocks), images.reshape(7, -1))


def test_the_loaded_cache_carries_its_factor_values_and_source(tmp_path: Path) -> None:
    root = tmp_path / "dsprites"
    result = _provision(root)
    data = dsprites.load_dsprites(root)
    assert data.source == result.source
    np.testing.assert_array_equal(data.values, sprites.values_of(data.classes))
    (root / dsprites.CACHE_NAME).unlink()  # metadata without its cache
    with pytest.raises(RuntimeError, match=f"no dSprites cache under {root}: run provision"):
        dsprites.load_dsprites(root)


def test_split_sizes_hold_out_a_tenth_and_at_least_one() -> None:
    assert dsprites.split_sizes(1920) == (1728, 192)
    assert dsprites.split_sizes(10) == (9, 1) and dsprites.split_sizes(3) == (2, 1)
    assert dsprites.split_sizes(25) == (23, 2)


def test_split_prefixes_take_1_up_to_the_whole_split(tmp_path: Path) -> None:
    root = tmp_path / "dsprites"
    _provision(root)
    train, test = dsprites.dsprites_splits(root, "random", 3, 1728, 1)
    assert (len(train), len(test)) == (1728, 1)
    with pytest.raises(ValueError, match=r"n_train must be in 1..1728, got 0"):
        dsprites.dsprites_splits(root, "random", 3, 0, None)


def test_a_valid_sub_grid_cache_is_used_as_it_is_and_said_to_be_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "dsprites"
    built = _provision(root)
    assert built.path == root
    with caplog.at_level("WARNING", logger="lfxai.data.dsprites"):
        again = dsprites.provision_dsprites(root, download=False)
    assert again == Provisioned(root, f"cache: {built.source}")
    assert f"{root} holds a sub-grid of 1920 images only" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="lfxai.data.dsprites"):
        dsprites.provision_dsprites(root, download=False, strides=SMALL)  # asked for: quiet
    assert "sub-grid" not in caplog.text


def test_the_cache_metadata_describes_the_packing(tmp_path: Path) -> None:
    root = tmp_path / "dsprites"
    _provision(root)
    meta = json.loads((root / dsprites.META_NAME).read_text())
    assert meta["image_shape"] == [1, 64, 64] and meta["factors"] == list(sprites.FACTORS)
    assert meta["packing"].startswith("np.packbits of each image's 64*64 pixels")
    assert meta["renderer_version"] == sprites.RENDERER_VERSION


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"renderer_version": 0}, f"rendered by renderer v0, now v{sprites.RENDERER_VERSION}"),
        ({"strides": None}, "strides must be 5 positive integers, got ()"),
        ({"strides": [1, 1, 1, 1]}, "strides must be 5 positive integers, got (1, 1, 1, 1)"),
        ({"strides": [0, 1, 1, 1, 1]}, "strides must be 5 positive integers"),
        ({"n_images": 5}, "n_images is 5, expected 1920"),
    ],
)
def test_cache_problems_name_the_field(change, problem, tmp_path: Path) -> None:
    root = tmp_path / "dsprites"
    _provision(root)
    meta = json.loads((root / dsprites.META_NAME).read_text())
    meta.update({k: v for k, v in change.items() if v is not None})
    for key in [k for k, v in change.items() if v is None]:
        del meta[key]
    (root / dsprites.META_NAME).write_text(json.dumps(meta))
    assert problem in dsprites.cache_problem(root)


def test_a_truncated_cache_names_its_expected_size(tmp_path: Path) -> None:
    root = tmp_path / "dsprites"
    _provision(root)
    cache = root / dsprites.CACHE_NAME
    cache.write_bytes(cache.read_bytes()[:1000])
    expected = 1920 * dsprites.ROW_BYTES
    assert dsprites.cache_problem(root) == f"{cache}: 1000 bytes, expected {expected} (1920 images)"


def test_a_download_for_the_full_grid_waits_seconds_not_forever(
    tmp_path: Path, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    monkeypatch.setattr(dsprites, "FULL_GRID", SMALL)  # downloads happen for the full grid
    timeouts = []

    def offline(url, timeout):
        timeouts.append((timeout, socket.getdefaulttimeout()))
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(3.0)
    try:
        with caplog.at_level("WARNING", logger="lfxai.data.dsprites"):
            result = dsprites.provision_dsprites(tmp_path / "d", strides=SMALL)
        after = socket.getdefaulttimeout()
    finally:
        socket.setdefaulttimeout(previous)
    assert timeouts == [(dsprites.DOWNLOAD_TIMEOUT_S, dsprites.DOWNLOAD_TIMEOUT_S)]
    assert after == 3.0 and result.path == tmp_path / "d"
    assert "official dSprites npz not obtained (network unreachable): rendering" in caplog.text


def test_a_rejected_npz_is_reported_in_the_log_and_the_result(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "dsprites"
    root.mkdir()
    (root / dsprites.NPZ_NAME).write_bytes(_official_npz(SMALL))  # not the official md5
    with caplog.at_level("WARNING", logger="lfxai.data.dsprites"):
        result = _provision(root)
    assert result.path == root and len(result.repaired) == 1
    npz = root / dsprites.NPZ_NAME
    assert f"{npz} is not the official dSprites npz: {npz}: md5 " in caplog.text
    (root / dsprites.CACHE_NAME).write_bytes(b"damaged")
    with caplog.at_level("WARNING", logger="lfxai.data.dsprites"):
        repaired = _provision(root)
    assert "dSprites cache invalid, rebuilding: " in caplog.text
    assert repaired.repaired[0].endswith("; rebuilt") and repaired.path == root


def test_a_cache_is_built_where_its_parents_do_not_exist_yet(tmp_path: Path) -> None:
    root = tmp_path / "new" / "data" / "dsprites"
    assert _provision(root).path == root and dsprites.cache_problem(root) is None


def test_an_npz_of_the_right_size_but_another_order_is_refused(tmp_path: Path) -> None:
    content = _official_npz(SMALL)
    path = tmp_path / "x.npz"
    with np.load(io.BytesIO(content), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in ("imgs", "latents_classes", "latents_values")}
    arrays["latents_classes"] = arrays["latents_classes"][::-1]
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"latents_classes \(1920, 6\) are not the official grid"):
        dsprites.check_npz(path, SMALL, md5=None)


def test_npz_images_saved_in_format_2_read_the_same(tmp_path: Path) -> None:
    """numpy writes ``.npy`` format 2.0 for large headers: its header is read too."""
    import zipfile

    images = (np.random.default_rng(1).random((3, 64, 64)) < 0.5).astype(np.uint8)
    path = tmp_path / "x.npz"
    with zipfile.ZipFile(path, "w") as archive, archive.open("imgs.npy", "w") as stream:
        np.lib.format.write_array(stream, images, version=(2, 0))
    [block] = dsprites._npz_blocks(path, 3, chunk=8)  # noqa: SLF001
    np.testing.assert_array_equal(block, images.reshape(3, -1))
