"""Launch a job: plan, record, sync code to every node at once, put the scripts in place, start them detached."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.cluster.inventory import Inventory
from orchestrator.cluster import quickcheck
from orchestrator.cluster.ssh import Session, fan_out
from orchestrator.cluster.sync import FILTERS, SyncStats, cache_dir, sync
from orchestrator.errors import PlanError, RemoteError
from orchestrator.jobs import plan as planning
from orchestrator.jobs import remote, slurm, states, watch, worker
from orchestrator.jobs.inputs import job_inputs
from orchestrator.jobs.render import masked_env, masked_toml, warm
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
    sync_paths: list[str] = field(default_factory=list)  # ignored project paths to send anyway (`--sync`)
    templates: str | None = None
    checks: bool = True  # preflight (versions, port) on every node; a hard mismatch refuses the launch
    max_restarts: int = 0  # relaunch this many times after a failure (training resumes from its checkpoint)
    hang_timeout: float | None = None  # no log output from any rank this long -> dump stacks
    on_hang: str = "fail"  # fail | wait
    worker_packages: dict[str, str] | None = None  # what the built-in worker's config needs on the nodes (preflight)
    exclude: list[str] = field(default_factory=list)  # Slurm: nodes the job must not get (sbatch --exclude)
    notify: str | None = None  # run on the controller with the job's JSON on stdin when it ends/fails/hangs/restarts

    def to_json(self) -> dict:
        data = dict(vars(self))
        data["project_dir"] = str(self.project_dir.resolve())
        return data

    @classmethod
    def from_json(cls, data: dict) -> "LaunchRequest":
        return cls(**{**data, "project_dir": Path(data["project_dir"])})


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
    """The rendered scripts for every node, touching nothing (an auto port shows as a placeholder 29500), and
    the files the job names: sent with the code, or checked on the nodes."""
    spec = make_spec(request, "DRYRUN")
    if inventory.scheduler == "slurm":
        text = slurm.describe(inventory, spec, request.exclude)
    else:
        text = planning.describe(planning.plan_job(inventory, spec, inventory.master_port or 29500))
    inputs = job_inputs(request.command, request.sync_paths, request.project_dir)
    text += "".join(f"# sent with the code even if ignored: {path}\n" for path in inputs.inside)
    return text + "".join(f"# must exist on every node ({key}): {path}\n" for path, key in inputs.outside.items())


def launch(inventory: Inventory, request: LaunchRequest, store: Store, session: Session, job_id: str,
           lineage: dict | None = None) -> Launched:
    """Start the job on every node; on any failure, stop what started and record the job FAILED.

    Two fan-outs, each one parallel round trip per node after the SSH handshake:
    1. connect + rsync the project (the master also picks a free port when `master_port = "auto"`);
    2. put the rendered scripts in place, snapshot the code and start the launch script detached.
    No node starts before every node has its code, so a sync failure starts nothing.
    On Slurm, `slurm.launch` submits the job instead (one round trip to the login node)."""
    if inventory.scheduler == "slurm":
        return slurm.launch(inventory, request, store, session, job_id, lineage)
    from orchestrator.cluster import doctor  # the SSH path's preflight (Slurm's launch needs none of it)

    started_at = time.monotonic()
    spec = make_spec(request, job_id)
    # validates before any I/O; the built-in templates are rendered once, with the port, while Jinja loads
    # beside the first round trip
    draft = planning.plan_job(inventory, spec, inventory.master_port or 0, render=request.templates is not None)
    templates = warm(request.templates)
    inputs = job_inputs(request.command, request.sync_paths, request.project_dir)
    if request.checks and request.worker_packages is None:  # kept in the record: a restart checks the same
        request.worker_packages = worker.needed_packages(request.command, request.project_dir)
    job = record_job(store, inventory, request, draft, lineage or {})
    share_code = request.sync_code and not inventory.shared_fs
    project = request.project_dir.resolve()
    digest = quickcheck.tree_digest(project, inputs.inside, tuple(FILTERS)) if share_code else None
    master = draft.nodes[0].node
    port: list[int] = [inventory.master_port] if inventory.master_port else []

    facts: dict[str, doctor.NodeFacts] = {}
    node_plans = {p.node.name: p for p in draft.nodes}

    def prepare(node) -> SyncStats | None:
        """One round trip: the checks (and the master's port) and the code snapshot when the node's cache is
        current; an rsync after it when not."""
        is_master = node.name == master.name
        cache = cache_dir(node, spec.project_name)
        stage = remote.stage_command(node_plans[node.name], cache, digest) if share_code and digest else None
        current = False
        if request.checks:
            found = doctor.check_node(session, node, master, inventory.master_port, paths=tuple(inputs.outside),
                                      pick_port=is_master and not port, then=stage)
            facts[node.name] = found
            if not found.reachable:
                return None  # the checks name it
            if is_master and not port and found.port:
                port.append(found.port)
            if stage and found.then is not None:
                current = remote.staged(node.name, *found.then)
        else:
            if is_master and not port:
                port.append(remote.free_port(session, node))
            current = bool(stage) and remote.stage_current_code(session, node_plans[node.name], cache, digest)
        if not share_code:
            return None
        if current:
            return SyncStats(node.name, [], 0, up_to_date=True)  # its snapshot is already taken
        return sync(session, node, project, cache, inputs.inside, digest)

    started: list[str] = []
    started_lock = threading.Lock()

    def start(node) -> None:
        failpoint("before-start")
        node_failpoint(node.name)
        node_plan = next(p for p in plan.nodes if p.node.name == node.name)
        snapshot = cache_dir(node, spec.project_name) if share_code and not synced[node.name].up_to_date else None
        shared = str(request.project_dir.resolve()) if request.sync_code and inventory.shared_fs else None
        remote.put_and_start(session, node_plan, snapshot, shared, shipped)
        with started_lock:  # recorded at once: if this launcher dies now, `abandon` can say what had started
            started.append(node.name)
            store.set_option(job, "started_nodes", sorted(started))

    shipped = worker.code_files() if worker.runs_worker(request.command) else None
    plan = draft
    try:
        synced = {k: v for k, v in fan_out([p.node for p in draft.nodes], prepare).items() if v}
        hard, _ = doctor.problems([facts[p.node.name] for p in draft.nodes], named_by=inputs.outside) \
            if request.checks else ([], [])
        if request.checks and request.worker_packages:
            hard += worker.env_problems([facts[p.node.name] for p in draft.nodes], request.worker_packages)
        if not port and not hard:
            hard.append(f"{master.name}: could not pick a free master port there")
        if hard:
            raise PreflightError("preflight checks failed (see `orch doctor`; --skip-checks to override):\n  "
                                 + "\n  ".join(hard))
        failpoint("after-sync")
        templates.result()
        plan = planning.plan_job(inventory, spec, port[0])
        job.master = f"{plan.master_addr}:{plan.master_port}"
        fan_out([p.node for p in plan.nodes], start)
    except (RemoteError, PreflightError) as exc:
        fail_launch(store, session, job, exc, started)
        raise
    for record in job.nodes:
        record.state = states.STARTING
    job.state = states.STARTING
    store.save_progress(job)
    # the project's git state is read once the job runs (a git process beside the nodes' starts would slow them)
    write_run_folder(Path(job.run_dir), plan, request, inventory, git_state(request.project_dir), synced)
    return Launched(job=job, plan=plan, synced=synced, seconds=time.monotonic() - started_at)


class PreflightError(PlanError):
    """A node is not fit to run the job (unreachable, no torch, versions differ from the master's)."""


def fail_launch(store: Store, session: Session, job: JobRecord, error: Exception, started: list[str] | None = None,
                stop: bool = True) -> None:
    """A node could not be prepared or started (or Slurm refused the job): sweep every node (`stop`; nothing to
    sweep when nothing was submitted) and record the job FAILED and why, naming the nodes that had started."""
    note = f" (already started, now stopped: {', '.join(sorted(started))})" if started else ""
    if stop:
        watch.give_up_launch(store, session, job, f"launch failed: {error}{note}", states.FAILED)
        return
    job.root_cause = f"launch failed: {error}"
    for record in job.nodes:
        record.state = states.FAILED
    job.state, job.ended = states.FAILED, time.time()
    store.save_progress(job)


def record_job(store: Store, inventory: Inventory, request: LaunchRequest, plan: planning.JobPlan,
            lineage: dict) -> JobRecord:
    job = JobRecord(
        options={"request": request.to_json(), "inventory": _absolute(inventory.path), "launcher": launcher_id(),
                 **lineage},
        id=plan.job_id, created=time.time(), state=states.PENDING, command=request.command,
        master=f"{plan.master_addr}:{plan.master_port or 'auto'}", nproc_per_node=plan.nproc_per_node,
        ssh_config=inventory.ssh_config, run_dir=str(store.run_dir(plan.job_id)),
        nodes=[NodeRecord(rank=p.rank, name=p.node.name, node=p.node, job_dir=p.job_dir) for p in plan.nodes],
    )
    store.add(job)
    return job


def failpoint(name: str) -> None:
    """Fault-injection hook for the reliability tests: `ORCH_FAILPOINT=after-sync:3` sleeps 3 s there, so a test
    can kill -9 the launcher at that exact step. Inert unless the variable names this point."""
    point, _, seconds = os.environ.get("ORCH_FAILPOINT", "").partition(":")
    if point == name:
        time.sleep(float(seconds or 5))


def node_failpoint(node: str) -> None:
    """`ORCH_FAILPOINT=start:NODE:S` sleeps S s before starting NODE (the launcher can be killed between two
    nodes' starts); `start-fail:NODE` makes NODE's start fail after the others had 1.5 s to start."""
    point, _, rest = os.environ.get("ORCH_FAILPOINT", "").partition(":")
    name, _, seconds = rest.partition(":")
    if point == "start" and name == node:
        time.sleep(float(seconds or 5))
    elif point == "start-fail" and name == node:
        time.sleep(1.5)
        raise RemoteError(f"{node}: could not start the job (failpoint start-fail)")


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
