"""The ECG5000 plugin on tiny UCR files: both splits, seeds, prefixes, baseline, figure, names.

Each beat's values are its row number plus ``t / 8`` (exact in float32), so a beat read back
names the row it came from: ``x[:, 0, 0]`` is the row.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from lfxai.data import ecg5000
from lfxai.data.splits import Split
from lfxai.plugins import get_dataset

TRAIN_LABELS = [1, 1, 1, 2, 3, 4]  # rows 0..5
TEST_LABELS = [1, 1, 1, 1, 2, 5]  # rows 6..11
NORMAL_ROWS = {0, 1, 2, 6, 7, 8, 9}  # 7 normal beats: round(0.2 * 7) = 1 for validation
ABNORMAL_ROWS = [3, 4, 5, 10, 11]  # explained in file order (train file, then test file)


def _tsv(labels: list[int], first_row: int) -> bytes:
    steps = np.arange(ecg5000.SEQUENCE_LENGTH) / 8
    lines = [
        "\t".join([f"{label:.7e}", *(f"{first_row + i + s:.7e}" for s in steps)])
        for i, label in enumerate(labels)
    ]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Twelve beats under ``<tmp>/ecg5000/ECG5000``; counts and checksums patched to match."""
    files = {"ECG5000_TRAIN.tsv": _tsv(TRAIN_LABELS, 0), "ECG5000_TEST.tsv": _tsv(TEST_LABELS, 6)}
    folder = tmp_path / "ecg5000" / "ECG5000"
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    digests = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
    monkeypatch.setattr(ecg5000, "ECG5000_SHA256", digests)
    monkeypatch.setattr(ecg5000, "TRAIN_CLASS_COUNTS", (3, 1, 1, 1, 0))
    monkeypatch.setattr(ecg5000, "TEST_CLASS_COUNTS", (4, 1, 0, 0, 1))
    monkeypatch.setattr(ecg5000, "N_TEST_RANDOM", 4)
    return tmp_path


def _rows(split: Split) -> list[int]:
    return split.x[:, 0, 0].round().long().tolist()


def test_normal_split_trains_on_normal_beats_and_explains_the_abnormal_ones(data_dir):
    splits = get_dataset("ecg5000").load(str(data_dir), "normal", 0, None, None)
    assert (len(splits.train), len(splits.test), len(splits.explain)) == (6, 1, 5)
    assert set(_rows(splits.train)) | set(_rows(splits.test)) == NORMAL_ROWS
    assert not set(_rows(splits.train)) & set(_rows(splits.test))
    assert _rows(splits.explain) == ABNORMAL_ROWS
    assert splits.train.y.tolist() == [1] * 6 and splits.explain.y.tolist() == [0] * 5
    # Sequences (N, 140, 1), the file's values.
    assert splits.train.x.shape == (6, 140, 1) and splits.train.x.dtype == torch.float32
    steps = torch.arange(140) / 8
    row = _rows(splits.train)[0]
    torch.testing.assert_close(splits.train.x[0, :, 0], row + steps, rtol=0, atol=0)


def test_random_split_shuffles_all_beats_by_the_seed(data_dir):
    plugin = get_dataset("ecg5000")
    splits = plugin.load(str(data_dir), "random", 0, None, None)
    train, test = _rows(splits.train), _rows(splits.test)
    assert (len(train), len(test)) == (8, 4) and sorted(train + test) == list(range(12))
    assert _rows(splits.explain) == test  # the test split is the one explained
    normal = [int(r in NORMAL_ROWS) for r in test]
    assert splits.test.y.tolist() == normal  # 1 for a normal beat, 0 for any other class
    again = plugin.load(str(data_dir), "random", 0, None, None)
    assert _rows(again.train) == train  # the same seed, the same split
    other = [_rows(plugin.load(str(data_dir), "random", seed, None, None).test) for seed in (1, 2)]
    assert test not in other  # another seed, another split


def test_prefixes_cut_train_test_and_explained_alike(data_dir):
    plugin = get_dataset("ecg5000")
    whole = plugin.load(str(data_dir), "random", 3, None, None)
    head = plugin.load(str(data_dir), "random", 3, 5, 2)
    assert _rows(head.train) == _rows(whole.train)[:5]
    assert _rows(head.test) == _rows(whole.test)[:2] == _rows(head.explain)
    normal = plugin.load(str(data_dir), "normal", 0, 4, 1)
    assert (len(normal.train), len(normal.test), len(normal.explain)) == (4, 1, 1)
    assert _rows(normal.explain) == ABNORMAL_ROWS[:1]


def test_baseline_is_the_mean_training_beat():
    x = torch.stack([torch.full((140, 1), v) for v in (1.0, 2.0, 6.0)])
    x[:, 7, 0] = torch.tensor([0.0, 3.0, 9.0])  # one step differs from the rest
    baseline = get_dataset("ecg5000").baseline(Split(x, torch.zeros(3)))
    expected = torch.full((1, 140, 1), 3.0)
    expected[0, 7, 0] = 4.0
    torch.testing.assert_close(baseline, expected, rtol=0, atol=1e-6)


def test_provisioned_files_are_the_two_ucr_files_with_their_digests(tmp_path):
    folder = tmp_path / "ecg5000" / "ECG5000"
    files = get_dataset("ecg5000").provisioned_files(tmp_path)
    assert set(files) == {folder / "ECG5000_TRAIN.tsv", folder / "ECG5000_TEST.tsv"}
    assert all(files[folder / name] == digest for name, digest in ecg5000.ECG5000_SHA256.items())


def test_example_figure_draws_each_beat_per_method():
    inputs = torch.rand(2, 140, 1)
    maps = [np.random.default_rng(k).random((2, 140, 1)) for k in range(2)]
    figure = get_dataset("ecg5000").example_figure(inputs, maps, ["DeepLift", "SHAP"], "beats")
    axes = np.array(figure.axes).reshape(2, 2)  # one row per method, one column per beat
    assert [row[0].get_ylabel() for row in axes] == ["DeepLift", "SHAP"]
    assert figure.get_suptitle() == "beats"
    for r, scores in enumerate(maps):
        for c in range(2):
            np.testing.assert_allclose(axes[r, c].lines[0].get_ydata(), inputs[c, :, 0].numpy())
            s = scores[c, :, 0] - scores[c, :, 0].min()
            np.testing.assert_allclose(axes[r, c].collections[-1].get_array(), s / s.max())
    plt.close(figure)


def test_names_used_in_runs_and_figures():
    plugin = get_dataset("ecg5000")
    assert (plugin.name, plugin.title, plugin.model) == ("ecg5000", "ECG5000", "lstm_ae")
    assert plugin.splits == ("normal", "random") and plugin.feature_unit == "time steps"
    assert plugin.model_label("reconstruction") == "reconstruction AE"
