"""IDX headers: a file is read only with the uint8 magic and at least one dimension."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from lfxai.data import idx


@pytest.mark.parametrize(
    "magic",
    [b"\x00\x00\x08\x00", b"\x00\x00\x0d\x01", b"\x01\x00\x08\x01", b"\x00\x00\x08"],
    ids=["no dimensions", "not uint8", "bad prefix", "short"],
)
def test_a_bad_magic_number_is_named(tmp_path: Path, magic: bytes):
    path = tmp_path / "f"
    path.write_bytes(
        magic + idx.encode_idx(np.ones(3, dtype=np.uint8))[4:] if len(magic) == 4 else magic
    )
    message = f"{path} is not a uint8 IDX file (magic {magic.hex()})"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        idx.read_idx(path)
