"""torch.distributed for `torchrun --nproc-per-node N -m benchmark.cli run ...`.

Only feature extraction is sharded (blocks round-robin over ranks, rank 0 assembles the cache file);
ranks talk through barriers and one tiny reduction, the features themselves go through the cache
folder, so any shared filesystem works. gloo on CPU, nccl on CUDA (each rank on GPU LOCAL_RANK).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import torch

from benchmark.errors import OodbenchError

BACKEND_ENV = "OODBENCH_DIST_BACKEND"  # override gloo/nccl
TIMEOUT_ENV = "OODBENCH_DIST_TIMEOUT_MIN"  # how long a rank waits for the others at a barrier (default 120)


def launched_by_torchrun() -> bool:
    """True when the environment describes more than one process (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK)."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank_world() -> tuple[int, int]:
    if is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def barrier() -> None:
    if rank_world()[1] > 1:
        torch.distributed.barrier()


def all_agree(flag: bool) -> bool:
    """True only if `flag` is true on every rank."""
    if rank_world()[1] == 1:
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if torch.distributed.get_backend() == "nccl" else "cpu"
    t = torch.tensor([int(flag)], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
    return bool(t.item())


@contextmanager
def process_group() -> Iterator[None]:
    """Join the process group torchrun describes (no-op for a single process), and leave it afterwards."""
    if not launched_by_torchrun() or is_initialized():
        yield
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = os.environ.get(BACKEND_ENV) or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise OodbenchError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible; "
                f"pass --nproc-per-node at most the number of GPUs."
            )
        torch.cuda.set_device(local_rank)
    try:
        torch.distributed.init_process_group(
            backend, timeout=timedelta(minutes=float(os.environ.get(TIMEOUT_ENV, "120")))
        )
    except Exception as err:
        raise OodbenchError(
            f"Cannot join the torch.distributed process group ({backend}): {err}. Launch with "
            f"`torchrun --nproc-per-node N -m benchmark.cli run ...` (see docs/scale-out.md)."
        ) from None
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()
