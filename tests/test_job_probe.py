"""The node probe against real short-lived jobs on this machine: a job that ends while it is being probed is
SUCCEEDED or FAILED, never LOST (a doctor smoke job once read LOST because its script exited mid-probe)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from orchestrator.cluster.inventory import Node
from orchestrator.cluster.ssh import Session
from orchestrator.jobs import remote, states
from orchestrator.jobs.store import NodeRecord

# what launch.sh does around the user's command: pgid first, exit_code (atomically) just before it exits
SHORT_JOB = "echo $$ > pgid; sleep 0.0$((RANDOM % 5)); echo {code} > exit_code.tmp && mv exit_code.tmp exit_code"


def test_a_job_ending_mid_probe_is_never_lost(tmp_path: Path):
    node = Node(name="local", host=None, addr="127.0.0.1", gpus=0, workdir=str(tmp_path), python="python3")
    seen: dict[str, int] = {}
    with Session() as session:
        for attempt in range(60):
            job_dir = tmp_path / f"job{attempt}"
            job_dir.mkdir()
            code = attempt % 2 * 3
            subprocess.run(["setsid", "-f", "bash", "-c", SHORT_JOB.format(code=code)], cwd=job_dir, check=True)
            record = NodeRecord(rank=0, name="local", node=node, job_dir=str(job_dir), state=states.STARTING)
            deadline = time.monotonic() + 10
            while record.state not in states.FINAL and time.monotonic() < deadline:
                probe, _ = remote.probe(session, record)
                record.state = states.node_state(probe, since_launch=60.0 if probe.pgid else 0.0,
                                                 previous=record.state)
                seen[record.state] = seen.get(record.state, 0) + 1
            assert record.state == (states.SUCCEEDED if code == 0 else states.FAILED), (attempt, seen)
    assert seen.get(states.RUNNING, 0) > 0  # the probes did overlap running jobs
