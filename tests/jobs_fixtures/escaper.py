"""Test job: a DataLoader with worker processes, plus a `setsid` child that leaves the job's process tree (re-parented
to PID 1, as Slurm's proctrack/linuxproc cannot follow). Prints `ready` once both are up, then runs until stopped."""

import subprocess
import time

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset


class Slow(Dataset):
    def __len__(self) -> int:
        return 10**6

    def __getitem__(self, index: int) -> torch.Tensor:
        time.sleep(0.2)
        return torch.tensor([index])


dist.init_process_group("gloo")
rank = dist.get_rank()
# `setsid -f` forks: the child's parent exits at once and the child is re-parented to PID 1, out of the job's tree
subprocess.run(["setsid", "-f", "sleep", "300"], check=True)
for step, batch in enumerate(DataLoader(Slow(), batch_size=1, num_workers=2)):
    if step == 0:
        print(f"rank {rank} ready", flush=True)
