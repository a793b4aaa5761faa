"""A job recorded in the store with its kept metric feed, without running anything: for the dashboard's unit
tests and bench/dashboard.py (64 nodes x 8 ranks)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from orchestrator.cluster.inventory import Node
from orchestrator.jobs.store import JobRecord, NodeRecord, Store


def add_job(store: Store, job_id: str, nodes: int = 2, ranks_per_node: int = 2, steps: int = 20,
            state: str = "RUNNING", slow_rank: int | None = None) -> JobRecord:
    """A RUNNING training job on `nodes` nodes with `steps` logged steps, evals every 10, and every rank's timing."""
    run_dir = store.run_dir(job_id)
    run_dir.mkdir(parents=True)
    records = [NodeRecord(rank=i, name=f"node{i}", job_dir=f"/work/jobs/{job_id}", state=state, pid=1000 + i,
                          started=time.time() - 60, last_line=f"step {steps} on node{i}",
                          node=Node(name=f"node{i}", host=f"node{i}", addr=f"10.0.{i // 250}.{i % 250}", gpus=8,
                                    workdir="/work", python="python3")) for i in range(nodes)]
    job = JobRecord(id=job_id, created=time.time() - 90, state=state, command=["-m", "orchestrator.train", "job.yaml"],
                    master="node0", nproc_per_node=ranks_per_node, ssh_config=None, run_dir=str(run_dir),
                    nodes=records, options={"progress": {"step": steps, "total": 2 * steps, "epoch": 0.5,
                                                         "loss": 1.0, "tokens_per_s": 900.0, "eta_s": 60}})
    store.add(job)
    store.save_progress(job)
    lines = [{"step": s, "epoch": s / 40, "time": 0, "loss": 3.0 / s, "learning_rate": 1e-3, "grad_norm": 1.5,
              "tokens_per_second": 1000.0 + s} for s in range(1, steps + 1)]
    lines += [{"step": s, "epoch": s / 40, "time": 0, "eval_loss": 2.0 / s, "eval_rouge-1": 10.0 * s / 10,
               "eval_bleu-4": 5.0} for s in range(10, steps + 1, 10)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in sorted(
        lines, key=lambda line: line["step"])))
    ranks = {}
    for rank in range(nodes * ranks_per_node):
        compute = 0.5 if rank == slow_rank else 0.1
        ranks[str(rank)] = {"rank": rank, "local_rank": rank % ranks_per_node, "node": f"node{rank // ranks_per_node}",
                            "pid": 5000 + rank, "step": steps, "time": time.time(), "forward_s": compute / 3,
                            "backward_s": compute * 2 / 3, "compute_s": compute, "data_wait_s": 0.001,
                            "tokens_per_s": 500.0, "window": 20}
    (run_dir / "timing.json").write_text(json.dumps({"ranks": ranks, "gpus": {}}))
    return job
