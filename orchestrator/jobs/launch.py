"""Launch a job: plan, record (with the scheduler's name), submit through the job's scheduler, keep what ran.

The scheduler (`schedulers/`) decides how the job reaches its nodes; this module is the same for all of them:
validate and plan before any I/O, record the job, submit, and on any failure stop what started and record the job
FAILED. What `orch launch` does after the nodes run (the run folder, the project's git state) is `keep_run`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.cluster.inventory import Inventory
from orchestrator.cluster.ssh import Session
from orchestrator.cluster.sync import SyncStats
from orchestrator.errors import RemoteError
from orchestrator.jobs import plan as planning
from orchestrator.jobs import schedulers, states, watch, worker
from orchestrator.jobs.render import masked_env, masked_toml
from orchestrator.jobs.schedulers.base import LaunchRequest, Planned, Submitted, SubmitError
from orchestrator.jobs.store import JobRecord, NodeRecord, Store

@dataclass
class Launched:
    job: JobRecord
    submitted: Submitted
    seconds: float

    @property
    def synced(self) -> dict[str, SyncStats]:
        return self.submitted.synced


def dry_run(inventory: Inventory, request: LaunchRequest) -> str:
    """The rendered scripts for every node, touching nothing (an auto port shows as a placeholder), and the files
    the job names: sent with the code, or checked on the nodes."""
    scheduler = schedulers.for_inventory(inventory)
    planned = scheduler.plan(inventory, request, "DRYRUN")
    text = scheduler.describe(planned)
    text += "".join(f"# sent with the code even if ignored: {path}\n" for path in planned.inputs.inside)
    return text + "".join(f"# must exist on every node ({key}): {path}\n"
                          for path, key in planned.inputs.outside.items())


def launch(inventory: Inventory, request: LaunchRequest, store: Store, session: Session, job_id: str,
           lineage: dict | None = None, keep: bool = True) -> Launched:
    """Start the job through its scheduler; on any failure, stop what started and record the job FAILED. With
    `keep`, the run folder is written before returning; without, the caller runs `keep_run` itself (`orch launch`
    hands it to the watcher it starts, so the command returns as soon as the nodes run)."""
    started_at = time.monotonic()
    scheduler = schedulers.for_inventory(inventory)
    planned = scheduler.plan(inventory, request, job_id, render=request.templates is not None)
    if request.checks and request.worker_packages is None:  # kept in the record: a restart checks the same
        request.worker_packages = worker.needed_packages(request.command, request.project_dir)
    job = record_job(store, inventory, request, planned, scheduler.NAME, lineage or {})
    try:
        submitted = scheduler.submit(planned, store, session, job)
    except (RemoteError, SubmitError) as exc:
        fail_launch(store, session, job, exc, job.options.get("started_nodes"))
        raise
    launched = Launched(job=job, submitted=submitted, seconds=time.monotonic() - started_at)
    if keep:
        keep_run(job, submitted, request, inventory)
    return launched


def fail_launch(store: Store, session: Session, job: JobRecord, error: Exception,
                started: list[str] | None = None) -> None:
    """A node could not be prepared or started (or the scheduler refused the job): stop whatever started and
    record the job FAILED and why, naming the nodes that had started."""
    note = f" (already started, now stopped: {', '.join(sorted(started))})" if started else ""
    watch.give_up_launch(store, session, job, f"launch failed: {error}{note}", states.FAILED)


def record_job(store: Store, inventory: Inventory, request: LaunchRequest, planned: Planned, scheduler: str,
               lineage: dict) -> JobRecord:
    """The job in the store, PENDING, before anything is submitted: its request, inventory, launcher and
    scheduler (with where its files live), so a launch that dies half-way is cleaned up by the right scheduler."""
    plan = planned.plan
    job = JobRecord(
        options={"request": request.to_json(), "inventory": _absolute(inventory.path), "launcher": launcher_id(),
                 "scheduler": {"name": scheduler, **planned.facts}, **lineage},
        id=plan.job_id, created=time.time(), state=states.PENDING, command=request.command,
        master=f"{plan.master_addr}:{inventory.master_port or 'auto'}", nproc_per_node=plan.nproc_per_node,
        ssh_config=inventory.ssh_config, run_dir=str(store.run_dir(plan.job_id)),
        nodes=[NodeRecord(rank=p.rank, name=p.node.name, node=p.node, job_dir=p.job_dir) for p in plan.nodes],
    )
    store.add(job)
    return job


def keep_run(job: JobRecord, submitted: Submitted, request: LaunchRequest, inventory: Inventory) -> None:
    """The run folder of a job whose nodes run: rendered scripts, the scheduler's own files, and the project's git
    state (read once the job runs: a git process beside the nodes' starts would slow them)."""
    run_dir = Path(job.run_dir)
    write_run_folder(run_dir, submitted.plan, request, inventory, git_state(request.project_dir), submitted.synced)
    for name, text in submitted.files.items():
        (run_dir / name).write_text(text)


def launcher_id() -> dict:
    """Who is launching: host and pid, so status can tell a launch that died half-way from one in progress."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _absolute(path: str) -> str:
    """Inventory paths are kept absolute so a restart from another folder finds the same file."""
    return path if path.startswith("<") else str(Path(path).resolve())


def write_run_folder(run_dir: Path, plan: planning.JobPlan, request: LaunchRequest, inventory: Inventory,
                     git: tuple[str, str] | None, synced: dict[str, SyncStats]) -> None:
    """Keep what ran: rendered scripts, resolved env (secrets masked), inventory, git commit and diff, and
    which files the sync sent to each node."""
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o700)
    for node_plan in plan.nodes:
        folder = run_dir / "nodes" / f"{node_plan.rank}-{node_plan.node.name}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "launch.sh").write_text(node_plan.launch_script)
        (folder / "stop.sh").write_text(node_plan.stop_script)
        (folder / "env.json").write_text(json.dumps(masked_env(node_plan.env), indent=1))
    if inventory.path and Path(inventory.path).is_file():
        (run_dir / "cluster.toml").write_text(masked_toml(Path(inventory.path).read_text()))
    (run_dir / "job.json").write_text(json.dumps({
        "id": plan.job_id, "command": request.command, "nodes": [p.node.name for p in plan.nodes],
        "master_addr": plan.master_addr, "master_port": plan.master_port, "nproc_per_node": plan.nproc_per_node,
        "project_dir": str(request.project_dir.resolve()),
    }, indent=1))
    if git is not None:
        (run_dir / "git-commit.txt").write_text(git[0])
        (run_dir / "git-diff.patch").write_text(git[1])
    (run_dir / "sync.json").write_text(json.dumps(
        {name: {"files_sent": s.files_sent, "bytes_sent": s.bytes_sent, "up_to_date": s.up_to_date}
         for name, s in synced.items()}, indent=1))


def git_state(folder: Path) -> tuple[str, str] | None:
    """(commit, diff against it) of the project, or None outside a git work tree."""
    commit = _git(folder, "rev-parse", "HEAD")
    return None if commit is None else (commit, _git(folder, "diff", "HEAD") or "")


def _git(folder: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None
