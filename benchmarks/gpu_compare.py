"""How the GPU check compares runs and reports checks (see :mod:`benchmarks.gpu_check`).

Tolerances, CUDA against the CPU: different kernels round differently and cuDNN convolutions
may use TF32 (10-bit mantissa, about 5e-4 relative per product), so values are compared by
relative L2 error (1e-2) and rankings by Spearman correlation (0.99). CUDA against CUDA with
one seed must be bitwise identical (``seed_everything`` selects deterministic kernels).
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from scipy.stats import spearmanr

from benchmarks.gpu_fixtures import CPU

MAX_REL_ERROR, MIN_SPEARMAN = 1e-2, 0.99
Outcome = tuple[str, str]  # (status, detail)


@dataclass
class Report:
    """Runs checks, prints one line each and remembers their statuses."""

    statuses: list[str] = field(default_factory=list)

    def run(self, name: str, check: Callable[[], Outcome]) -> None:
        """Runs one check, printing its status, detail and time (a crash is a FAIL)."""
        start = time.perf_counter()
        try:
            status, detail = check()
        except Exception as error:  # a crash is a failed check, not the end of the report
            status, detail = "FAIL", f"{type(error).__name__}: {error}".splitlines()[0][:300]
            traceback.print_exc(file=sys.stderr)
        self.statuses.append(status)
        print(
            f"{status:<4}  {name:<40} {detail}  [{time.perf_counter() - start:.1f} s]", flush=True
        )

    def skip(self, name: str, why: str) -> None:
        """Records a skipped check and why."""
        self.run(name, lambda: ("SKIP", why))


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative L2 error of ``a`` against ``b``."""
    a, b = torch.as_tensor(a).double().cpu(), torch.as_tensor(b).double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def row_spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """The smallest Spearman correlation between matching rows of two score matrices."""
    a, b = (
        torch.as_tensor(a).cpu().reshape(len(a), -1),
        torch.as_tensor(b).cpu().reshape(len(b), -1),
    )
    return min(float(spearmanr(x.numpy(), y.numpy()).statistic) for x, y in zip(a, b, strict=True))


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors are bitwise equal (on the CPU)."""
    return torch.equal(torch.as_tensor(a).cpu(), torch.as_tensor(b).cpu())


def compare(name: str, runs: list[torch.Tensor], cuda: bool) -> Outcome:
    """Bitwise equality of two runs on the device, then closeness to the CPU run if any."""
    if not same(runs[0], runs[1]):
        return (
            "FAIL",
            f"two {name} runs with one seed differ (rel {rel_error(runs[0], runs[1]):.2e})",
        )
    if not cuda:
        return "PASS", "CPU repeat bitwise identical"
    err, rho = rel_error(runs[0], runs[2]), row_spearman(runs[0], runs[2])
    ok = err <= MAX_REL_ERROR and rho >= MIN_SPEARMAN
    return (
        "PASS" if ok else "FAIL"
    ), f"CUDA repeat identical; vs CPU rel {err:.1e}, Spearman >= {rho:.4f}"


def devices(cuda: bool) -> list[torch.device]:
    """Where each compared computation runs: twice on the device, then once on the CPU."""
    return [torch.device("cuda")] * 2 + [CPU] if cuda else [CPU, CPU]
