"""Test job: join the gloo group, then print a heartbeat every 0.5 s for STEADY_S seconds (or go quiet).

FAIL_ATTEMPTS=N makes the first N attempts exit 5 (ORCH_RESTART_COUNT counts restarts) and later ones succeed;
FAIL_NODE=NAME makes the first attempt exit 5 on node NAME only.
QUIET_AFTER_S stops printing (but keeps running) after that many seconds: a hang as orch sees it.
"""

import os
import sys
import time

import torch.distributed as dist

dist.init_process_group("gloo")
rank = dist.get_rank()
print(f"rank {rank} up pid {os.getpid()} attempt {os.environ.get('ORCH_RESTART_COUNT', '0')}", flush=True)
attempt = int(os.environ.get("ORCH_RESTART_COUNT", "0"))
failing_node = attempt == 0 and os.environ.get("FAIL_NODE", "-") == os.environ.get("ORCH_NODE")
if attempt < int(os.environ.get("FAIL_ATTEMPTS", "0")) or failing_node:
    sys.exit(5)
quiet_after = float(os.environ.get("QUIET_AFTER_S", "1e9"))
start = time.monotonic()
while time.monotonic() - start < float(os.environ.get("STEADY_S", "2")):
    if time.monotonic() - start < quiet_after:
        print(f"rank {rank} beat", flush=True)
    time.sleep(0.5)
dist.barrier()
dist.destroy_process_group()
