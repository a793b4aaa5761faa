"""Launch a job: plan, record, sync code to every node at once, put the scripts in place, start them detached."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.cluster.inventory import Inventory
from orchestrator.cluster.ssh import Session, fan_out
from orchestrator.cluster.sync import SyncStats, cache_dir, sync
from orchestrator.errors import RemoteError
from orchestrator.jobs import plan as planning
from orchestrator.jobs import remote, states, watch
from orchestrator.jobs.render import masked_env
from orchestrator.jobs.store import JobRecord, NodeRecord, Store


@dataclass
class LaunchRequest:
    """A launch as the CLI parsed it."""

    command: list[str]
    nodes: list[str] | None = None
    nproc_per_node: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    project_dir: Path = field(default_factory=Path.cwd)
    sync_code: bool = True
    templates: str | None = None


@dataclass
class Launched:
    job: JobRecord
    plan: planning.JobPlan
    synced: dict[str, SyncStats]
    seconds: float


def make_spec(request: LaunchRequest, job_id: str) -> planning.JobSpec:
    return planning.JobSpec(job_id=job_id, nodes=request.nodes, command=request.command,
                            nproc_per_node=request.nproc_per_node, env=request.env,
                            project_name=request.project_dir.resolve().name or "project", templates=request.templates)


def dry_run(inventory: Inventory, request: LaunchRequest) -> str:
    """The rendered scripts for every node, touching nothing (an auto port shows as a placeholder 29500)."""
    spec = make_spec(request, "DRYRUN")
    return planning.describe(planning.plan_job(inventory, spec, inventory.master_port or 29500))


def launch(inventory: Inventory, request: LaunchRequest, store: Store, session: Session, job_id: str) -> Launched:
    """Start the job on every node; on any failure, stop what started and record the job FAILED."""
    started_at = time.monotonic()
    spec = make_spec(request, job_id)
    # plan first with a placeholder port: it validates everything before any node is contacted
    planning.plan_job(inventory, spec, inventory.master_port or 29500)
    master = inventory.select(request.nodes)[0]
    port = inventory.master_port or remote.free_port(session, master)
    plan = planning.plan_job(inventory, spec, port)
    job = _record(store, inventory, request, plan)
    write_run_folder(Path(job.run_dir), plan, request, inventory)
    share_code = request.sync_code and not inventory.shared_fs
    synced: dict[str, SyncStats] = {}

    def prepare(node) -> SyncStats | None:
        node_plan = next(p for p in plan.nodes if p.node.name == node.name)
        stats = None
        if share_code:
            stats = sync(session, node, request.project_dir.resolve(), cache_dir(node, spec.project_name))
        snapshot = cache_dir(node, spec.project_name) if share_code else None
        remote.put_files(session, node_plan, snapshot)
        if not share_code:  # shared filesystem: run from the project folder itself
            session.run(node, f"rmdir {_q(node_plan.code_dir)} && ln -s {_q(str(request.project_dir.resolve()))} "
                              f"{_q(node_plan.code_dir)}")
        return stats

    try:
        synced = {k: v for k, v in fan_out([p.node for p in plan.nodes], prepare).items() if v}
        fan_out([p.node for p in plan.nodes], lambda node: remote.start(
            session, next(p for p in plan.nodes if p.node.name == node.name), job_id))
    except RemoteError as exc:
        job.root_cause = f"launch failed: {exc}"
        watch.stop_nodes(session, job.nodes)
        for record in job.nodes:
            record.state = states.FAILED if record.state != states.SUCCEEDED else record.state
        job.state, job.ended = states.FAILED, time.time()
        store.save_progress(job)
        raise
    for record in job.nodes:
        record.state = states.STARTING
    store.save_progress(job)
    (Path(job.run_dir) / "sync.json").write_text(json.dumps(
        {name: {"files_sent": s.files_sent, "bytes_sent": s.bytes_sent} for name, s in synced.items()}, indent=1))
    return Launched(job=job, plan=plan, synced=synced, seconds=time.monotonic() - started_at)


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _record(store: Store, inventory: Inventory, request: LaunchRequest, plan: planning.JobPlan) -> JobRecord:
    job = JobRecord(
        id=plan.job_id, created=time.time(), state=states.PENDING, command=request.command,
        master=f"{plan.master_addr}:{plan.master_port}", nproc_per_node=plan.nproc_per_node,
        ssh_config=inventory.ssh_config, run_dir=str(store.run_dir(plan.job_id)),
        nodes=[NodeRecord(rank=p.rank, name=p.node.name, node=p.node, job_dir=p.job_dir) for p in plan.nodes],
    )
    store.add(job)
    return job


def write_run_folder(run_dir: Path, plan: planning.JobPlan, request: LaunchRequest, inventory: Inventory) -> None:
    """Keep what ran: rendered scripts, resolved env (secrets masked), inventory, git commit and diff."""
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o700)
    for node_plan in plan.nodes:
        folder = run_dir / "nodes" / f"{node_plan.rank}-{node_plan.node.name}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "launch.sh").write_text(node_plan.launch_script)
        (folder / "stop.sh").write_text(node_plan.stop_script)
        (folder / "env.json").write_text(json.dumps(masked_env(node_plan.env), indent=1))
    if inventory.path and Path(inventory.path).is_file():
        (run_dir / "cluster.toml").write_text(Path(inventory.path).read_text())
    (run_dir / "job.json").write_text(json.dumps({
        "id": plan.job_id, "command": request.command, "nodes": [p.node.name for p in plan.nodes],
        "master_addr": plan.master_addr, "master_port": plan.master_port, "nproc_per_node": plan.nproc_per_node,
        "project_dir": str(request.project_dir.resolve()),
    }, indent=1))
    git = _git(request.project_dir, "rev-parse", "HEAD")
    if git is not None:
        (run_dir / "git-commit.txt").write_text(git)
        (run_dir / "git-diff.patch").write_text(_git(request.project_dir, "diff", "HEAD") or "")


def _git(folder: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None
