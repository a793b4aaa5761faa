"""`orch doctor --smoke`: a tiny all_reduce across the nodes, as a real job, with a timeout."""

from __future__ import annotations

import tempfile
from pathlib import Path

from orchestrator.cluster.inventory import Inventory
from orchestrator.cluster.ssh import Session
from orchestrator.jobs import states, watch
from orchestrator.jobs.launch import LaunchRequest, launch
from orchestrator.jobs.store import JobRecord, Store, new_job_id

SMOKE_SCRIPT = '''\
"""orch smoke test: every rank all-reduces rank+1; the sum proves every node joined."""
import datetime
import torch
import torch.distributed as dist

dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
value = torch.tensor([dist.get_rank() + 1.0])
dist.all_reduce(value)
world = dist.get_world_size()
assert int(value.item()) == world * (world + 1) // 2, value
print(f"orch-smoke ok rank {dist.get_rank()} of {world}: sum {int(value.item())}", flush=True)
dist.destroy_process_group()
'''


def run_smoke(inventory: Inventory, nodes: list[str] | None, store: Store, timeout_s: float = 120) -> JobRecord:
    """Launch the smoke job on `nodes`, wait up to `timeout_s`, stop it if it hangs; return the final job."""
    with tempfile.TemporaryDirectory(prefix="orch-smoke-") as folder:
        (Path(folder) / "orch_smoke.py").write_text(SMOKE_SCRIPT)
        request = LaunchRequest(command=["python", "orch_smoke.py"], nodes=nodes, nproc_per_node=1,
                                project_dir=Path(folder), checks=False)
        with Session(inventory.ssh_config) as session:
            job = launch(inventory, request, store, session, new_job_id()).job
            watch.wait(store, session, job, timeout=timeout_s)
            if job.state not in states.FINAL:
                watch.stop_job(store, session, job)
                job.root_cause = f"smoke test timed out after {timeout_s:.0f} s (a node cannot reach the master?)"
                store.save_progress(job)
    return job
