"""dSprites: 64x64 binary sprites with five known factors, for the Burgess VAE of ``disvae``.

Besides the saliency metrics every ``disvae`` data set gets, dSprites knows its true factors,
so each trained encoder is also scored by the mutual information gap against them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from lfxai.data.dsprites import (
    CACHE_NAME,
    META_NAME,
    SPLITS,
    dsprites_splits,
    grid_size,
    provision_dsprites,
    split_sizes,
)
from lfxai.data.provision import Provisioned
from lfxai.data.splits import Split
from lfxai.data.sprites import FACTORS
from lfxai.metrics.mig import mutual_information_gap
from lfxai.plotting.curves import image_grid
from lfxai.plugins.base import DatasetPlugin, Splits, SplitSizes, register_dataset

MIG_EXAMPLES = 10_000
"""Test images the MIG is computed on (the first of the random test split), as in
disentanglement_lib's MIG; the whole test split when it is smaller."""
ENCODE_BATCH = 1_000


@register_dataset
class DSprites(DatasetPlugin):
    """A seeded random 90/10 split of the 737,280 sprites (``n_train`` / ``n_test`` prefixes).

    The images stay bit-packed and memory-mapped (:class:`~lfxai.data.packed.PackedImages`);
    the labels ``y`` are the factor classes ``(n, 5)`` (shape, scale, orientation, pos_x,
    pos_y).
    """

    name = "dsprites"
    title = "dSprites"
    # disvae builds it with lfxai.models.vae.burgess_vae (it needs the loss and beta too).
    model = "burgess_vae"
    experiments = ("disvae",)
    splits = SPLITS
    feature_unit = "pixels"

    def provision_root(self, root: Path) -> Provisioned:
        """Checks (or renders) the bit-packed sprite cache."""
        return provision_dsprites(root)

    def split_sizes(self, data_dir: str | Path, split: str) -> SplitSizes:
        """The grid's 90 / 10 split: the cache's grid, else the full one."""
        # The grid the cache's metadata records (a sub-grid, or what a repair rebuilds),
        # else the full grid provisioning builds: 663,552 train / 73,728 test.
        n_train, n_test = split_sizes(grid_size(self.root(data_dir)))
        return SplitSizes(n_train, n_test, n_test)

    def read_splits(
        self, data_dir: str, split: str, seed: int, n_train: int | None, n_test: int | None
    ) -> Splits:
        """The 90 / 10 split of the grid (the test part is explained)."""
        train, test = dsprites_splits(self.root(data_dir), split, seed, n_train, n_test)
        return Splits(train, test, test)

    def provisioned_files(self, data_dir: str | Path) -> dict[Path, str]:
        """The cache file with the sha256 its metadata records."""
        # The cache's sha256, recorded in its metadata when written and checked by provision.
        root = self.root(data_dir)
        meta = json.loads((root / META_NAME).read_text())
        return {root / CACHE_NAME: meta["sha256"]}

    def baseline(self, train: Split) -> torch.Tensor:
        """A black image: the sprites' background."""
        return torch.zeros(1, *train.x.shape[1:])  # a black image: the sprites' background

    def example_figure(
        self, inputs: torch.Tensor, maps: list[np.ndarray], methods: list[str], title: str
    ) -> Figure:
        """Sprites and their importance maps in one grid."""
        grid = np.concatenate([inputs[:, 0].numpy()[None], np.stack([m[:, 0] for m in maps])])
        return image_grid(grid, ["image", *methods], title)

    def factor_scores(self, encoder: nn.Module, splits: Splits, device: str) -> dict[str, float]:
        """MIG of the encoder means on the first :data:`MIG_EXAMPLES` test images.

        ``mig`` and the gap of each factor, ``mig/<factor>`` (NaN for a factor that does not vary).
        """
        test = splits.test.head(min(MIG_EXAMPLES, len(splits.test)))
        encoder.eval()
        with torch.no_grad():
            codes = torch.cat(
                [
                    encoder(test.x[start : start + ENCODE_BATCH].to(device)).cpu()
                    for start in range(0, len(test), ENCODE_BATCH)
                ]
            )
        result = mutual_information_gap(codes, test.y)
        gaps = {f"mig/{name}": float(g) for name, g in zip(FACTORS, result["gaps"], strict=True)}
        return {"mig": result["mig"], **gaps}
