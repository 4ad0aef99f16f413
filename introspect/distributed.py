"""Runs under torchrun: which process this is, and the few collectives a sharded run needs.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; with a world of one (or none) every call here is a no-op.
CPU runs use gloo, CUDA runs nccl with one device per local rank.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Ranks:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def broadcast(self, value):
        """Rank 0's ``value`` on every rank."""
        if self.world == 1:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value) -> list | None:
        """Every rank's ``value``, in rank order, on rank 0 (None elsewhere)."""
        if self.world == 1:
            return [value]
        out = [None] * self.world if self.main else None
        torch.distributed.gather_object(value, out, dst=0)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    def record(self, items_per_rank: list[int]) -> dict:
        """run.json's "distributed" entry."""
        return {"world_size": self.world, "backend": self.backend, "items_per_rank": items_per_rank}


def join(device: str) -> tuple[Ranks, str]:
    """Join the torchrun job this process belongs to (if any); the device this rank runs on."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    backend = "nccl" if cuda else "gloo"
    torch.distributed.init_process_group(backend, rank=rank, world_size=world)
    return Ranks(rank, world, local_rank, backend), device


def fault_after(rank: int, item: int) -> None:
    """Tests: INTROSPECT_FAULT=RANK:ITEM makes that rank exit abruptly once that item is saved."""
    fault = os.environ.get("INTROSPECT_FAULT", "")
    if fault and fault == f"{rank}:{item}":
        os._exit(3)
