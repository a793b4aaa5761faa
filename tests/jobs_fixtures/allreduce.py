"""Test job: every rank all-reduces its rank+1 over gloo and prints the sum; optional failure/sleep.

FAIL_RANK exits 3 on that rank; RAISE_RANK raises a ValueError there (a real Python traceback, exit 1)."""

import os
import sys
import time

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
value = torch.tensor([rank + 1.0])
dist.all_reduce(value)
print(f"rank {rank}/{world} node {os.environ.get('ORCH_NODE')} sum {int(value.item())}", flush=True)
fail_rank = int(os.environ.get("FAIL_RANK", "-1"))
if rank == fail_rank:
    print(f"rank {rank} failing with 3", flush=True)
    os._exit(3)


def load_shard(number: int) -> None:
    raise ValueError(f"shard {number} is corrupt: expected 4096 rows, found 17")


if rank == int(os.environ.get("RAISE_RANK", "-1")):
    load_shard(rank)
sleep = float(os.environ.get("SLEEP_S", "0"))
if sleep:
    time.sleep(sleep)
    dist.barrier()
dist.destroy_process_group()
sys.exit(0)
