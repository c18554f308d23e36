"""Where and how reproducibly to compute: the device a setting names, and the seeds.

``get_device`` explains in one line why CUDA is not used when GPUs exist (a torch build
without CUDA, hidden devices, a driver too old); ``seed_everything`` makes CUDA as
deterministic as PyTorch allows. Every experiment calls both before any work.
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seeds Python, NumPy and torch and makes CUDA as deterministic as PyTorch allows.

    Besides the seeds, this selects deterministic cuDNN kernels (``deterministic = True``,
    ``benchmark = False``), turns on ``torch.use_deterministic_algorithms(True,
    warn_only=True)`` and sets ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless the user set it.
    cuBLAS reads that variable when it creates its handle, at the process's first CUDA
    matrix product, so call this before any CUDA work (the experiments call it first).

    Where determinism still cannot hold:

    - operations without a deterministic CUDA kernel (e.g. ``index_add_``, ``scatter_add_``
      and ``index_put_(accumulate=True)`` in some configurations, ``histc``, the backward
      passes of interpolation and adaptive pooling) only warn, because raising would stop
      experiments that use them; their results may vary between runs;
    - a different GPU, driver, CUDA/cuDNN version or the CPU runs different kernels (and
      cuDNN may use TF32), so results match across machines only up to rounding;
    - CUDA work done before this call may already have created the cuBLAS handle (we warn).

    Args:
        seed: the seed of every generator.

    Returns:
        A CPU generator seeded with ``seed``.
    """
    if "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        if torch.cuda.is_initialized():
            warnings.warn(
                "CUDA was initialised before seed_everything set CUBLAS_WORKSPACE_CONFIG; "
                "cuBLAS may not be deterministic in this process",
                stacklevel=2,
            )
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def get_device(name: str = "auto") -> torch.device:
    """The device to compute on.

    Args:
        name: ``auto`` (CUDA when torch can use it, else the CPU, with a warning when GPUs
            exist that torch cannot use) or any torch device name (``cpu``, ``cuda:0``).

    Returns:
        The device.

    Raises:
        ValueError: a CUDA device was asked for and torch cannot use it.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if driver_gpu_count() > 0:
            warnings.warn(f"falling back to the CPU: {why_no_cuda()}", RuntimeWarning, stacklevel=2)
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but {why_no_cuda()}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {name!r} asked for, but only {torch.cuda.device_count()} CUDA "
                "device(s) are visible"
            )
    return device


def driver_gpu_count() -> int:
    """GPUs the NVIDIA driver reports, whether or not this torch build can use them.

    ``torch.cuda.device_count()`` asks NVML, so it sees GPUs that CUDA itself failed to
    initialise (e.g. a driver older than the CUDA runtime); a torch build without CUDA
    always says 0, so the kernel driver's own list is read then.
    """
    count = torch.cuda.device_count()
    if count == 0:
        gpus = Path("/proc/driver/nvidia/gpus")
        count = len(list(gpus.iterdir())) if gpus.is_dir() else 0
    return count


def why_no_cuda() -> str:
    """Why torch cannot use CUDA here, in one line a user can act on."""
    if torch.version.cuda is None:
        return f"this torch build ({torch.__version__}) has no CUDA support"
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None and visible.strip() in ("", "-1"):
            return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
        if driver_gpu_count() == 0:
            return "no CUDA device was found"
        return (
            f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees "
            f"{driver_gpu_count()} GPU(s) but cannot initialise CUDA (is the driver older "
            "than this CUDA version needs? torch's own warning says more)"
        )
    return "CUDA is available"
