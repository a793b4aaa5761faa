"""Copy a job's TensorBoard event files from its master node into the local run folder.

Every job of a project shares `<workdir>/outputs/<project>/` on the master, so the event files are picked by when
their writer was created: the time in their name (`events.out.tfevents.<unix seconds>.<host>.<pid>...`) lies
between the job's `started_at` and `ended_at` on the master, both read from the node's own clock."""

from __future__ import annotations

import math
import posixpath
import shlex
from pathlib import Path

from orchestrator.cluster.ssh import Session
from orchestrator.cluster.sync import pull
from orchestrator.jobs import states
from orchestrator.jobs.store import JobRecord

EVENT_PREFIX = "events.out.tfevents."


def output_root(job: JobRecord) -> str:
    """Where the master node keeps this project's outputs (relative output_dirs resolve here)."""
    project = Path(job.options.get("request", {}).get("project_dir", "project")).name
    return posixpath.join(job.nodes[0].node.workdir, "outputs", project)


def _listing_command(job: JobRecord) -> str:
    """Print the master's start/end times of the job and every event file under the project's outputs."""
    job_dir, root = shlex.quote(job.nodes[0].job_dir), shlex.quote(output_root(job))
    return (f"cd {job_dir} || exit 3; echo started=$(cat started_at 2>/dev/null); "
            "echo ended=$(cat ended_at 2>/dev/null); echo log=$(stat -c %Y log 2>/dev/null); "
            f"cd {root} 2>/dev/null && find . -type f -name {shlex.quote(EVENT_PREFIX + '*')} -printf 'file=%P\\n'")


def written_by(job: JobRecord, listing: str) -> list[str]:
    """The event files in `listing` whose writer was created while the job ran on the master (a job that died
    without an `ended_at` ends with its log's last write; one still running has no end yet)."""
    facts: dict[str, str] = {}
    files = []
    for line in listing.splitlines():
        key, _, value = line.partition("=")
        if key == "file":
            files.append(value)
        else:
            facts[key] = value
    if not facts.get("started"):
        return []
    start = math.floor(float(facts["started"]))
    end = facts.get("ended") or (facts.get("log") if job.state in states.FINAL else "") or "inf"
    chosen = []
    for path in files:
        created = posixpath.basename(path)[len(EVENT_PREFIX):].split(".", 1)[0]
        if created.isdigit() and start <= int(created) <= float(end):
            chosen.append(path)
    return chosen


def fetch_events(job: JobRecord) -> tuple[Path, int]:
    """Pull this job's event files (keeping their folders) into `<run_dir>/tensorboard`; return the folder and
    how many event files of the job it holds."""
    target = Path(job.run_dir) / "tensorboard"
    master = job.nodes[0].node
    with Session(job.ssh_config) as session:
        files = written_by(job, session.run(master, _listing_command(job), check=False).text)
        if files:
            pull(session, master, output_root(job), target, files)
    return target, sum(1 for path in files if (target / path).is_file())
