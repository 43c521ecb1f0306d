"""Where and with what a run executed: device, package versions, code commit, seeds, cost.

Every result row records these, so two entries that differ in any of them can be told apart.
"""

from __future__ import annotations

import functools
import platform
import random
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import benchmark
from benchmark.errors import OodbenchError

PACKAGES = ("torch", "torchvision", "open_clip_torch", "numpy", "datasets", "pyarrow", "pandas", "scikit-learn")


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise OodbenchError(
            "--device cuda was asked for but torch sees no CUDA device; use --device cpu "
            "(or auto), or install a CUDA build of torch."
        )
    if device != "cpu" and not device.startswith("cuda"):
        raise OodbenchError(f"Unknown device {device!r}; use cpu, cuda, cuda:N or auto.")
    try:
        return torch.device(device)
    except RuntimeError:
        raise OodbenchError(f"Unknown device {device!r}; use cpu, cuda, cuda:N or auto.") from None


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()}"


@functools.cache
def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


@functools.cache
def git_commit() -> str:
    """The commit of the oodbench checkout ('-dirty' when it has local changes), or '' outside git; read once
    per process, since the code a process runs is the code it started with."""
    root = Path(benchmark.__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{sha}-dirty" if dirty else sha


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch from the run's seed; the returned generator is the method's."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class Cost:
    seconds: float = 0.0
    peak_memory_mb: float = 0.0


@contextmanager
def measure(device: torch.device) -> Iterator[Cost]:
    """Wall-clock seconds and peak memory of the block: CUDA memory allocated on a GPU, the process's peak
    resident memory (its high-water mark so far, which includes what was loaded before) on a CPU."""
    cost = Cost()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    try:
        yield cost
    finally:
        cost.seconds = time.perf_counter() - start
        if device.type == "cuda":
            cost.peak_memory_mb = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            cost.peak_memory_mb = rss / 2**20 if sys.platform == "darwin" else rss / 2**10
