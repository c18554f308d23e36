"""Size settings are checked against what they draw from, before any data is read.

Every case names the setting, its value and the limit in one :class:`ConfigError` (the runner
prints it as one line, the run ends FAILED), and a split is never silently cut: what trains is
what the params say.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import lfxai.experiments  # noqa: F401  (fills the registry)
from lfxai.config import PROFILES, ConfigError, build_config, load_profile
from lfxai.data import cifar10, dsprites, ecg5000, mnist
from lfxai.experiments.registry import entries, get_experiment
from lfxai.plugins import get_dataset
from lfxai.plugins.base import SplitSizes

SMALL = (1, 5, 8, 4, 4)  # a dSprites sub-grid of 1,920 images: 1,728 train / 192 test


def _config(dataset: str, experiment: str, data_dir: Path, **overrides: object):
    values = {**load_profile(dataset, experiment, "smoke"), "data_dir": str(data_dir)}
    strings = {key: str(value) for key, value in overrides.items()}
    return build_config(get_experiment(dataset, experiment).schema, values, strings)


def _never(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("data was read before the sizes were checked")


@pytest.mark.parametrize("key", entries(), ids="/".join)
def test_every_profile_fits_the_data_it_draws_from(key, tmp_path):
    """The shipped profiles pass the size checks (on the official sizes: no data here)."""
    plugin = get_dataset(key[0])
    for profile in PROFILES:
        values = {**load_profile(*key, profile), "data_dir": str(tmp_path)}
        plugin.check_config(build_config(get_experiment(*key).schema, values))


def test_split_sizes_are_the_data_sets_own(tmp_path):
    assert get_dataset("mnist").split_sizes(tmp_path, "standard") == SplitSizes(
        60_000, 10_000, 10_000
    )
    assert get_dataset("ecg5000").split_sizes(tmp_path, "normal") == SplitSizes(2335, 584, 2081)
    assert get_dataset("ecg5000").split_sizes(tmp_path, "random") == SplitSizes(4000, 1000, 1000)
    assert get_dataset("cifar10").split_sizes(tmp_path, "standard") == SplitSizes(
        50_000, 10_000, 10_000
    )
    # No dSprites cache yet: the full grid provisioning builds, 737,280 images split 90/10.
    assert get_dataset("dsprites").split_sizes(tmp_path, "random") == SplitSizes(
        663_552, 73_728, 73_728
    )


@pytest.mark.parametrize(
    ("dataset", "experiment", "setting", "value", "message"),
    [
        (
            "mnist",
            "consistency_features",
            "n_train",
            100_000,
            "n_train=100000 exceeds the 60000 training examples of mnist (split 'standard'); "
            "choose n_train <= 60000 (none: all of them)",
        ),
        (
            "mnist",
            "disvae",
            "n_test",
            20_000,
            "n_test=20000 exceeds the 10000 test examples of mnist (split 'resized32'); "
            "choose n_test <= 10000 (none: all of them)",
        ),
        (
            "dsprites",
            "disvae",
            "n_train",
            1_000_000,
            "n_train=1000000 exceeds the 663552 training examples of dsprites (split 'random')",
        ),
        (
            "ecg5000",
            "consistency_features",
            "n_train",
            100_000,
            "n_train=100000 exceeds the 2335 training examples of ecg5000 (split 'normal'); "
            "choose n_train <= 2335",
        ),
        (
            "ecg5000",
            "consistency_features",
            "n_test",
            585,  # the validation split of normal beats holds 584
            "n_test=585 exceeds the 584 test examples of ecg5000 (split 'normal')",
        ),
        (
            "ecg5000",
            "consistency_examples",
            "n_train",
            100_000,
            "n_train=100000 exceeds the 4000 training examples of ecg5000 (split 'random')",
        ),
        (
            "ecg5000",
            "consistency_examples",
            "n_test",
            1001,
            "n_test=1001 exceeds the 1000 test examples of ecg5000 (split 'random')",
        ),
        (
            "cifar10",
            "consistency_features",
            "n_train",
            50_001,
            "n_train=50001 exceeds the 50000 training examples of cifar10 (split 'standard')",
        ),
        (
            "mnist",
            "consistency_examples",
            "n_train_explained",
            601,
            "n_train_explained=601 exceeds the 600 examples the model trains on "
            "(n_train=600); choose n_train_explained <= 600",
        ),
        (
            "mnist",
            "consistency_examples",
            "n_test_explained",
            201,
            "n_test_explained=201 exceeds the 200 examples of the explained split "
            "(n_test=200); choose n_test_explained <= 200",
        ),
        (
            "mnist",
            "pretext",
            "scae_n_train",
            301,
            "scae_n_train=301 exceeds the 300 examples the model trains on (n_train=300)",
        ),
        (
            "mnist",
            "disvae",
            "n_explained",
            101,
            "n_explained=101 exceeds the 100 examples of the explained split (n_test=100)",
        ),
    ],
)
def test_a_size_beyond_its_split_names_setting_value_and_limit(
    dataset, experiment, setting, value, message, tmp_path
):
    config = _config(dataset, experiment, tmp_path, **{setting: value})
    with pytest.raises(ConfigError) as error:
        get_dataset(dataset).check_config(config)
    assert message in str(error.value) and "\n" not in str(error.value)
    # The limit the message names is the real one: it is accepted, one more is not.
    limit = int(re.search(rf"choose {setting} <= (\d+)", str(error.value)).group(1))
    get_dataset(dataset).check_config(_config(dataset, experiment, tmp_path, **{setting: limit}))
    with pytest.raises(ConfigError, match=rf"^{setting}={limit + 1} exceeds the {limit} "):
        get_dataset(dataset).check_config(
            _config(dataset, experiment, tmp_path, **{setting: limit + 1})
        )


def test_subsets_of_all_examples_are_checked_against_the_whole_split(tmp_path):
    config = _config("ecg5000", "consistency_examples", tmp_path, n_train="none")
    get_dataset("ecg5000").check_config(config)
    config = _config(
        "ecg5000", "consistency_examples", tmp_path, n_train="none", n_train_explained=4001
    )
    with pytest.raises(
        ConfigError,
        match=r"^n_train_explained=4001 exceeds the 4000 examples the model trains on \(all "
        r"of ecg5000's 'random' training split\); choose n_train_explained <= 4000$",
    ):
        get_dataset("ecg5000").check_config(config)


def _fake_ecg_arrays(calls: list[str]):
    """All 5,000 beats as the data module returns them (the recorded class counts)."""

    def arrays(_data_dir):
        calls.append("read")
        counts = np.add(ecg5000.TRAIN_CLASS_COUNTS, ecg5000.TEST_CLASS_COUNTS)
        labels = np.repeat(np.arange(1, ecg5000.N_CLASSES + 1), counts)
        series = np.random.default_rng(0).normal(size=(len(labels), 140)).astype(np.float32)
        return series, labels

    return arrays


@pytest.mark.parametrize("split", ecg5000.SPLITS)
def test_ecg5000_is_never_cut_silently(split, tmp_path, monkeypatch):
    """Before: ``n_train=100000`` trained on 2,335 (normal) or 4,000 (random) beats while the
    params and the run name said 100,000. Now refused before the files are read, for both
    split kinds; the declared sizes are the sizes the splits really have."""
    calls: list[str] = []
    monkeypatch.setattr(ecg5000, "ecg5000_arrays", _fake_ecg_arrays(calls))
    plugin = get_dataset("ecg5000")
    sizes = plugin.split_sizes(tmp_path, split)
    for n_train, n_test in ((100_000, None), (sizes.train + 1, None), (None, sizes.test + 1)):
        with pytest.raises(ConfigError, match=r"exceeds the \d+ (training|test) examples "):
            plugin.load(str(tmp_path), split, 0, n_train, n_test)
    assert calls == []  # refused before any data was read
    splits = plugin.load(str(tmp_path), split, 0, None, None)
    found = (len(splits.train), len(splits.test), len(splits.explain))
    assert found == (sizes.train, sizes.test, sizes.explain)
    splits = plugin.load(str(tmp_path), split, 0, sizes.train, sizes.test)  # the limits fit
    assert (len(splits.train), len(splits.test)) == (sizes.train, sizes.test)


def test_mnist_sizes_are_refused_before_the_files_are_read(tmp_path, monkeypatch):
    """Before: ``ValueError: size must be in 1..60000`` as a traceback, after reading (and,
    for ``resized32``, resizing) the whole split."""
    monkeypatch.setattr(mnist, "ensure_mnist", _never)
    plugin = get_dataset("mnist")
    for split in plugin.splits:
        with pytest.raises(ConfigError, match=r"^n_train=100000 exceeds the 60000 training"):
            plugin.load(str(tmp_path), split, 0, 100_000, None)
        with pytest.raises(ConfigError, match=r"^n_test=10001 exceeds the 10000 test examples"):
            plugin.load(str(tmp_path), split, 0, None, 10_001)


@pytest.fixture(scope="module")
def subgrid(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    dsprites.provision_dsprites(folder / "dsprites", download=False, strides=SMALL)
    return folder


def test_dsprites_sizes_follow_the_cached_grid(subgrid, monkeypatch):
    plugin = get_dataset("dsprites")
    assert plugin.split_sizes(subgrid, "random") == SplitSizes(1728, 192, 192)
    monkeypatch.setattr(dsprites, "load_dsprites", _never)
    with pytest.raises(ConfigError, match=r"n_train=100000 exceeds the 1728 training examples"):
        plugin.load(str(subgrid), "random", 0, 100_000, None)
    with pytest.raises(ConfigError, match=r"n_test=193 exceeds the 192 test examples"):
        plugin.load(str(subgrid), "random", 0, None, 193)


def test_cifar10_fixture_sizes_come_from_its_manifest(tmp_path):
    folder = cifar10.write_cifar10(tmp_path / "cifar10", n_train=10, n_test=5)
    plugin = get_dataset("cifar10")
    assert plugin.split_sizes(tmp_path, "standard") == SplitSizes(10, 5, 5)
    with pytest.raises(ConfigError, match=r"n_train=11 exceeds the 10 training examples"):
        plugin.check_config(_config("cifar10", "consistency_features", tmp_path, n_train=11))
    # A manifest that lies about the sizes (its digests still match the files): the splits
    # read are not what the params would say, so the load is refused rather than cut.
    manifest = json.loads((folder / cifar10.MANIFEST).read_text())
    (folder / cifar10.MANIFEST).write_text(json.dumps({**manifest, "n_train": 12}))
    with pytest.raises(ConfigError, match=r"gave splits of \{'train': 10, .* \{'train': 12"):
        plugin.load(str(tmp_path), "standard", 0, None, None)
