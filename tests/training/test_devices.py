"""Devices and determinism: which device, why not CUDA (the exact messages), seeding."""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch

from lfxai import devices
from lfxai.devices import get_device, seed_everything


def test_get_device():
    assert get_device("cpu") == torch.device("cpu")
    assert get_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert get_device("auto") == get_device()


def test_get_device_auto_picks_cuda_when_torch_can_use_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_device("auto") == torch.device("cuda") and get_device().type == "cuda"


def test_get_device_rejects_an_index_past_the_visible_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert get_device("cuda:1") == torch.device("cuda", 1)
    assert get_device("cuda") == torch.device("cuda")
    message = "device 'cuda:2' asked for, but only 2 CUDA device(s) are visible"
    with pytest.raises(ValueError) as error:
        get_device("cuda:2")  # indices count from 0: index 2 is the third device
    assert str(error.value) == message


def test_get_device_cuda_without_cuda_says_why(monkeypatch):
    _no_cuda(monkeypatch, driver_gpus=0)
    with pytest.raises(ValueError) as error:
        get_device("cuda:0")
    assert str(error.value) == "device 'cuda:0' asked for, but no CUDA device was found"
    with pytest.raises(ValueError, match="cuda:1"):
        get_device("cuda:1")
    assert get_device("cpu") == torch.device("cpu")


def _caller_file(function: Callable) -> str:
    """The file a warning with ``stacklevel=2`` from ``function`` names when this test calls it.

    That is this file, unless a decorator wraps ``function`` (mutmut's trampoline does while
    it mutates lfxai): then the wrapper's file is the caller. The trampoline is two frames, so
    under mutmut a stacklevel one too high names it as well: these tests catch that only
    outside mutmut (checked by applying stacklevel=3 by hand).
    """
    return function.__code__.co_filename if hasattr(function, "__wrapped__") else __file__


def test_get_device_auto_falls_back_with_a_warning_naming_the_cause_and_the_caller(monkeypatch):
    _no_cuda(monkeypatch, driver_gpus=1)  # a GPU torch cannot use (one is enough to warn)
    with pytest.warns(RuntimeWarning) as record:
        assert get_device("auto") == torch.device("cpu")
    (warning,) = record
    assert str(warning.message) == f"falling back to the CPU: {devices.why_no_cuda()}"
    assert warning.filename == _caller_file(get_device)  # the caller's line, not lfxai's


def test_get_device_auto_is_silent_without_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(devices, "driver_gpu_count", lambda: 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_device("auto") == torch.device("cpu")


def test_seed_everything_seeds_every_generator():
    generator = seed_everything(11)
    first = (
        random.random(),
        np.random.rand(),
        torch.rand(()).item(),
        torch.rand((), generator=generator).item(),
    )
    generator = seed_everything(11)
    again = (
        random.random(),
        np.random.rand(),
        torch.rand(()).item(),
        torch.rand((), generator=generator).item(),
    )
    assert first == again
    assert torch.rand((), generator=seed_everything(12)).item() != first[3]


def test_seed_everything_selects_deterministic_kernels(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's own choice stays
    seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_seed_everything_warns_the_caller_when_cuda_started_first(monkeypatch):
    """cuBLAS read the variable already, so setting it can no longer make it deterministic."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.warns(UserWarning) as record:
        seed_everything(0)
    (warning,) = record
    assert str(warning.message) == (
        "CUDA was initialised before seed_everything set CUBLAS_WORKSPACE_CONFIG; "
        "cuBLAS may not be deterministic in this process"
    )
    assert warning.filename == _caller_file(seed_everything)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # still set for new handles


def _no_cuda(monkeypatch, driver_gpus: int, cuda_version: str | None = "12.4") -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", cuda_version)
    monkeypatch.setattr(devices, "driver_gpu_count", lambda: driver_gpus)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_why_no_cuda_names_the_cause(monkeypatch):
    _no_cuda(monkeypatch, driver_gpus=0, cuda_version=None)
    assert devices.why_no_cuda() == (f"this torch build ({torch.__version__}) has no CUDA support")
    _no_cuda(monkeypatch, driver_gpus=0)
    assert devices.why_no_cuda() == "no CUDA device was found"
    for hidden in ("", " -1 "):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert devices.why_no_cuda() == f"CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # a visible GPU: the driver is asked
    assert devices.why_no_cuda() == "no CUDA device was found"
    _no_cuda(monkeypatch, driver_gpus=2)
    assert devices.why_no_cuda() == (
        f"torch {torch.__version__} (CUDA 12.4) sees 2 GPU(s) but cannot initialise CUDA (is "
        "the driver older than this CUDA version needs? torch's own warning says more)"
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.why_no_cuda() == "CUDA is available"


def test_driver_gpu_count_reads_the_driver_only_when_torch_sees_none(monkeypatch, tmp_path):
    gpus = tmp_path / "proc/driver/nvidia/gpus"
    monkeypatch.setattr(devices, "Path", lambda path: tmp_path / path.lstrip("/"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert devices.driver_gpu_count() == 0  # no driver folder
    gpus.mkdir(parents=True)
    for bus in ("0000:01:00.0", "0000:02:00.0", "0000:03:00.0"):
        (gpus / bus).mkdir()
    assert devices.driver_gpu_count() == 3
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # NVML's count wins
    assert devices.driver_gpu_count() == 1
