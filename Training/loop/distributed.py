"""Multi-process training with ``torch.distributed`` (DDP): torchrun environment and spawning.

``torchrun --nproc-per-node N -m Training train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; ``spawn(fn, nproc, ...)`` does the same for
``nproc`` local processes (what ``--nproc`` uses). Backend: NCCL on CUDA, gloo on the CPU.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (``world_size == 1``: no process group)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when not launched by torchrun or ``spawn``)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    """``RANK`` from the environment (0 when not launched by torchrun or ``spawn``)."""
    return int(os.environ.get("RANK", "0"))


def init_from_env(device_type: str) -> DistInfo:
    """Join the process group described by the torchrun environment variables.

    Returns a single-process ``DistInfo`` when ``WORLD_SIZE`` is absent or 1. On CUDA the
    process uses GPU ``LOCAL_RANK``.
    """
    world_size = env_world_size()
    if world_size <= 1:
        return DistInfo()
    missing = [key for key in ENV_KEYS if key not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={world_size} but {missing} are not set (use torchrun)")
    info = DistInfo(int(os.environ["RANK"]), world_size, int(os.environ["LOCAL_RANK"]))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend, rank=info.rank, world_size=world_size)
    return info


def shutdown() -> None:
    """Leave the process group (no-op without one)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_gather_objects(info: DistInfo, value: Any) -> list[Any]:
    """``value`` of every rank, in rank order (a one-item list without a process group)."""
    if not info.enabled:
        return [value]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def all_reduce_sum(info: DistInfo, values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64)."""
    if not info.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.cpu()]


def free_port() -> int:
    """A TCP port that is free on this machine right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(fn: Callable[..., Any], nproc: int, *args: Any) -> None:
    """Run ``fn(*args)`` in ``nproc`` new processes with the torchrun environment set (local
    rendezvous on a free port); each calls ``init_from_env`` itself. Raises if one fails."""
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    port = free_port()
    mp.spawn(_run_rank, args=(nproc, port, fn, args), nprocs=nproc, join=True)


def _run_rank(
    rank: int, nproc: int, port: int, fn: Callable[..., Any], args: tuple[Any, ...]
) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(nproc),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    # Share the cores between the local processes (as torchrun's OMP_NUM_THREADS does).
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))
    try:
        fn(*args)
    finally:
        shutdown()
