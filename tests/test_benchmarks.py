"""The benchmarks run on the CPU, and the GPU check finds every entry point to run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import (
    gpu_check,
    gpu_compare,
    gpu_entry_points,
    hvp_chunks,
    parallel_training,
    training_layout,
    training_loader,
    unit_attribution,
)


def test_entry_points_are_every_registered_pair():
    from lfxai.experiments.registry import entries

    pairs = gpu_entry_points.entry_points()
    assert pairs == sorted(entries())
    assert ("mnist", "roar_test") in pairs and ("ecg5000", "consistency_examples") in pairs


def test_compare_needs_identical_repeats_and_close_cpu_runs():
    a = torch.arange(12.0).reshape(3, 4)
    assert gpu_compare.compare("m", [a, a.clone()], cuda=False)[0] == "PASS"
    assert gpu_compare.compare("m", [a, a + 1e-3], cuda=False)[0] == "FAIL"
    close, shuffled = a * (1 + 1e-4), a[:, [1, 0, 3, 2]]
    assert gpu_compare.compare("m", [a, a.clone(), close], cuda=True)[0] == "PASS"
    assert gpu_compare.compare("m", [a, a.clone(), shuffled], cuda=True)[0] == "FAIL"


def test_training_loader_benchmark_runs_both_paths(capsys):
    training_loader.main(["--n-train", "200", "--n-test", "100", "--batch-size", "100"])
    out = capsys.readouterr().out
    assert "dataloader" in out and "split" in out and "faster" in out


def test_hvp_chunks_benchmark_times_each_chunk_with_the_same_scores(capsys):
    argv = ["--chunks", "1", "3", "--n", "12", "--batch", "4", "--steps", "1", "--repeats", "1"]
    rows = hvp_chunks.main(argv)
    assert [row["chunk"] for row in rows] == [1, 3]
    assert all(row["error"] < 1e-5 for row in rows)  # the same products, rounding aside
    out = capsys.readouterr().out
    assert "chunk 1: best step" in out and "against chunk 3" in out


@pytest.mark.slow
def test_gpu_check_on_the_cpu_passes_and_skips_the_gpu_parts(capsys):
    assert gpu_check.main(["--device", "cpu", "--skip-entrypoints"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line[:4] in ("PASS", "FAIL", "SKIP")]
    assert not [line for line in lines if line.startswith("FAIL")]
    assert any(line.startswith("SKIP  fit: CUDA vs CPU") for line in lines)
    assert any("LSTM autoencoder" in line and line.startswith("PASS") for line in lines)
    assert "summary:" in out and "0 failed" in out


def test_entry_point_runs_compare_metrics_but_not_timings():
    run = ({"fit/test_loss": 0.1, "time/total_seconds": 3.0}, {"device_used": "cuda"})
    other = ({"fit/test_loss": 0.1, "time/total_seconds": 4.0}, {"device_used": "cuda"})
    assert gpu_entry_points.is_timing("throughput/Saliency_images_per_second")
    assert not gpu_entry_points.is_timing("fit/test_loss")
    assert gpu_entry_points.is_timing("system/gpu_0_utilization_percentage")
    timing = gpu_entry_points.is_timing
    metrics = [{k: v for k, v in m.items() if not timing(k)} for m, _ in (run, other)]
    assert gpu_entry_points.same_runs([(metrics[0], run[1]), (metrics[1], other[1])])[0] == "PASS"
    changed = ({"fit/test_loss": 0.2}, {"device_used": "cuda"})
    assert gpu_entry_points.same_runs([(metrics[0], run[1]), changed])[0] == "FAIL"
    on_cpu = (metrics[1], {"device_used": "cpu"})
    assert gpu_entry_points.same_runs([(metrics[0], run[1]), on_cpu])[0] == "FAIL"


def test_unit_attribution_benchmark_times_both_paths(capsys):
    unit_attribution.main(["--n-images", "8", "--batch-size", "4", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "batched" in out and "per-unit loop" in out and "batched / loop = " in out


def test_compare_dsprites_finds_rendered_frames_exactly(tmp_path, capsys):
    from PIL import Image

    from benchmarks import compare_dsprites
    from lfxai.data import sprites

    # Frames of our own renderer (a square and a heart at one position): matched with IoU 1.
    classes = np.array([[0, 2, 5, 10, 20], [2, 4, 13, 10, 20]])
    frames = sprites.render_classes(classes).numpy()
    images = [Image.fromarray(f.astype(np.uint8) * 255) for f in frames]
    path = tmp_path / "frames.gif"
    images[0].save(path, save_all=True, append_images=images[1:])
    rows = compare_dsprites.main([str(path)])
    assert [r["shape"] for r in rows] == ["square", "heart"]
    assert all(r["iou_mean"] == 1.0 and r["box_edges_off"] == 0.0 for r in rows)
    assert rows[0]["ref_area"] == rows[0]["our_area"] == frames[0].sum()
    assert "IoU mean" in capsys.readouterr().out


def test_training_layout_benchmark_times_both_layouts(capsys):
    training_layout.main(
        [
            "--n-train",
            "120",
            "--n-test",
            "60",
            "--batch-size",
            "60",
            "--epochs",
            "1",
            "--repeats",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert "default" in out and "channels_last" in out and "x faster" in out
    drift = float(out.rsplit("relative ", 1)[1].split()[0])
    assert drift < 1e-3  # the two layouts train the same model


def test_parallel_training_benchmark_times_both_ways_on_the_same_models(capsys):
    argv = "--n-train 120 --n-test 60 --batch-size 60 --epochs 1 --repeats 1 --models 3"
    parallel_training.main(argv.split())
    out = capsys.readouterr().out
    assert "one after the other" in out and "2 at a time" in out and "x faster" in out
    assert "3 x mnist_ae" in out
    drift = float(out.rsplit("relative ", 1)[1].split()[0])
    assert drift < 1e-3  # the same three trainings either way, up to float rounding
