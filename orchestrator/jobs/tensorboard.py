"""Copy a job's TensorBoard event files from its master node into the local run folder."""

from __future__ import annotations

import posixpath
from pathlib import Path

from orchestrator.cluster.ssh import Session
from orchestrator.cluster.sync import pull
from orchestrator.errors import RemoteError
from orchestrator.jobs.store import JobRecord

EVENT_PATTERN = "events.out.tfevents*"


def output_root(job: JobRecord) -> str:
    """Where the master node keeps this project's outputs (relative output_dirs resolve here)."""
    project = Path(job.options.get("request", {}).get("project_dir", "project")).name
    return posixpath.join(job.nodes[0].node.workdir, "outputs", project)


def fetch_events(job: JobRecord) -> tuple[Path, int]:
    """Pull event files (keeping their folders) into `<run_dir>/tensorboard`; return the folder and how many
    event files it now holds."""
    target = Path(job.run_dir) / "tensorboard"
    with Session(job.ssh_config) as session:
        try:
            pull(session, job.nodes[0].node, output_root(job), target, [EVENT_PATTERN])
        except RemoteError as exc:
            if "No such file or directory" not in str(exc) and "some files/attrs were not" not in str(exc):
                raise
    return target, sum(1 for _ in target.rglob(EVENT_PATTERN))
