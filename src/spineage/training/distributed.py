"""Data-parallel training: one process per device, gloo on CPU and nccl on CUDA.

``spineage train --nproc N`` starts N processes through ``torch.distributed.run``
(what ``torchrun`` is), so both ways meet the same code: each process reads
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from its environment. Only rank 0
logs, checkpoints and registers.

Example:
    >>> context = DistributedContext()
    >>> context.is_main, context.world_size
    (True, 1)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spineage.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands among the training processes.

    Args:
        rank: global rank (0 logs, checkpoints and registers).
        world_size: processes in all.
        local_rank: rank on this machine (picks the CUDA device).
        backend: "gloo", "nccl", or "" when not distributed.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        """Whether this process logs, checkpoints and registers."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group is running."""
        return bool(self.backend)

    def device(self) -> torch.device:
        """This process's device: its CUDA device by local rank, else the CPU."""
        import torch

        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank % torch.cuda.device_count())
        return torch.device("cpu")


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (or ``--nproc``) with a world of several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_distributed() -> DistributedContext:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA); a single process otherwise."""
    if not launched_by_torchrun():
        return DistributedContext()
    import torch
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, backend)


def close_distributed(context: DistributedContext) -> None:
    """Leave the process group (if one was joined)."""
    if context.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def broadcast_number(value: float, context: DistributedContext) -> float:
    """Rank 0's ``value`` on every rank (so that every rank takes the same early-stopping decision)."""
    if not context.distributed:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=context.device() if context.backend == "nccl" else "cpu")
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def barrier(context: DistributedContext) -> None:
    """Wait for every rank (no-op in a single process)."""
    if context.distributed:
        import torch.distributed as dist

        dist.barrier()


def launch_processes(nproc: int, arguments: Sequence[str]) -> int:
    """Run ``spineage <arguments>`` in ``nproc`` processes with ``torch.distributed.run``; its exit code.

    Args:
        nproc: processes (one per GPU, or CPU processes sharing the cores).
        arguments: the spineage command line without ``--nproc``.
    """
    if nproc < 2:
        raise ValueError(f"Expected at least 2 processes to launch, found {nproc}")
    if launched_by_torchrun():
        raise UserError("Expected --nproc only outside torchrun, found it inside a torchrun launch (drop --nproc)")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
        "-m", "spineage", *arguments,
    ]
    environment = dict(os.environ)
    # torchrun sets OMP_NUM_THREADS=1 per process unless told; let the trainer share the cores instead.
    environment.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(command, env=environment)
