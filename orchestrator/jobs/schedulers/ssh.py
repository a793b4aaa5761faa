"""The SSH pool: orch itself reaches every node over SSH, syncs the code, starts each node's wrapper detached
(`setsid`), probes the nodes' job folders and runs their stop scripts. orch locks its nodes (a busy node refuses a
launch unless `--force`); nothing queues.

A launch is two fan-outs, each one parallel round trip per node after the SSH handshake:
1. the preflight checks (the master also picks a free port when `master_port = "auto"`) and the code snapshot when
   the node's cache is current, an rsync after it when not;
2. the rendered scripts put in place and the launch script started detached.
No node starts before every node has its code, so a sync failure starts nothing.
"""

from __future__ import annotations

import threading
import time

from orchestrator.cluster import doctor as checks
from orchestrator.cluster import quickcheck
from orchestrator.cluster.inventory import Inventory
from orchestrator.cluster.ssh import Session, fan_out
from orchestrator.cluster.sync import FILTERS, SyncStats, cache_dir, sync
from orchestrator.errors import RemoteError
from orchestrator.jobs import plan as planning
from orchestrator.jobs import feed, remote, states, worker
from orchestrator.jobs.faults import failpoint, node_failpoint
from orchestrator.jobs.inputs import job_inputs
from orchestrator.jobs.render import warm
from orchestrator.jobs.schedulers.base import (DoctorReport, LaunchRequest, Observation, Planned, RankView,
                                               Submitted, make_spec, preflight_failed)
from orchestrator.jobs.store import JobRecord, NodeRecord, Store

NAME = "ssh"
TITLE = "SSH"
QUEUES = False
DRY_RUN_PORT = 29500  # what `--dry-run` shows for an auto port


def plan(inventory: Inventory, request: LaunchRequest, job_id: str, render: bool = True) -> Planned:
    """Every node's plan in the order given; rendered with the inventory's port (a placeholder for `auto`: the
    submit picks a free one on the master and renders again)."""
    spec = make_spec(request, job_id)
    port = inventory.master_port or (DRY_RUN_PORT if render else 0)
    # validates before any I/O; without `render` Jinja loads in the background while the job is recorded and the
    # nodes' first round trip runs (the submit renders once, with the port)
    job_plan = planning.plan_job(inventory, spec, port, render=render)
    inputs = job_inputs(request.command, request.sync_paths, request.project_dir)
    return Planned(request=request, inventory=inventory, spec=spec, plan=job_plan, inputs=inputs, rendered=render,
                   templates=None if render else warm(request.templates))


def describe(planned: Planned) -> str:
    return planning.describe(planned.plan)


def submit(planned: Planned, store: Store, session: Session, job: JobRecord) -> Submitted:
    """Sync and start every node (see the module's docstring); the nodes that started are recorded as they start
    (`started_nodes`), so a launcher that dies half-way can be cleaned up. Raises SubmitError (a preflight) or
    RemoteError, leaving the sweep to the caller."""
    request, inventory, spec, draft = planned.request, planned.inventory, planned.spec, planned.plan
    inputs = planned.inputs
    share_code = request.sync_code and not inventory.shared_fs
    project = request.project_dir.resolve()
    digest = quickcheck.tree_digest(project, inputs.inside, tuple(FILTERS)) if share_code else None
    master = draft.nodes[0].node
    port: list[int] = [inventory.master_port] if inventory.master_port else []
    facts: dict[str, checks.NodeFacts] = {}
    node_plans = {p.node.name: p for p in draft.nodes}

    def prepare(node) -> SyncStats | None:
        """One round trip: the checks (and the master's port) and the code snapshot when the node's cache is
        current; an rsync after it when not."""
        is_master = node.name == master.name
        cache = cache_dir(node, spec.project_name)
        stage = remote.stage_command(node_plans[node.name], cache, digest) if share_code and digest else None
        current = False
        if request.checks:
            found = checks.check_node(session, node, master, inventory.master_port, paths=tuple(inputs.outside),
                                      pick_port=is_master and not port, then=stage,
                                      code_dirs=worker.model_folders(inputs.outside) if request.worker_packages else ())
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
        node_plan = next(p for p in job_plan.nodes if p.node.name == node.name)
        snapshot = cache_dir(node, spec.project_name) if share_code and not synced[node.name].up_to_date else None
        shared = str(project) if request.sync_code and inventory.shared_fs else None
        remote.put_and_start(session, node_plan, snapshot, shared, shipped)
        with started_lock:  # recorded at once: if this launcher dies now, `abandon` can say what had started
            started.append(node.name)
            store.set_option(job, "started_nodes", sorted(started))

    shipped = worker.code_files() if worker.runs_worker(request.command) else None
    synced = {k: v for k, v in fan_out([p.node for p in draft.nodes], prepare).items() if v}
    hard, _ = checks.problems([facts[p.node.name] for p in draft.nodes], named_by=inputs.outside) \
        if request.checks else ([], [])
    if request.checks and request.worker_packages:
        hard += worker.env_problems([facts[p.node.name] for p in draft.nodes], request.worker_packages)
    if not port and not hard:
        hard.append(f"{master.name}: could not pick a free master port there")
    if hard:
        raise preflight_failed(hard)
    failpoint("after-sync")
    if planned.templates is not None:
        planned.templates.result()
    job_plan = planning.plan_job(inventory, spec, port[0])
    job.master = f"{job_plan.master_addr}:{job_plan.master_port}"
    fan_out([p.node for p in job_plan.nodes], start)
    for record in job.nodes:
        record.state = states.STARTING
    job.state = states.STARTING
    store.save_progress(job)
    return Submitted(plan=job_plan, synced=synced, headline="started on")


def observe(session: Session, job: JobRecord, offsets: dict[int, int] | None) -> Observation | None:
    """Probe every node at once (a LOST node stays LOST: probing it again would only wait out another ssh timeout
    on every poll)."""
    since = time.time() - job.created
    by_name = {n.name: n for n in job.nodes if n.state != states.LOST}
    metrics_at = feed.metrics_offset(job.run_dir)  # node_rank 0's probe also reads the new metric lines
    results = fan_out([n.node for n in by_name.values()], lambda node: remote.probe(
        session, by_name[node.name], None if offsets is None else offsets.get(by_name[node.name].rank),
        metrics_at if by_name[node.name].rank == 0 else None))
    ranks = {}
    for name, (probe, log) in results.items():
        record = by_name[name]
        ranks[record.rank] = RankView(state=states.node_state(probe, since, record.state), probe=probe, log=log)
    return Observation(ranks=ranks)


def read_log(session: Session, job: JobRecord, record: NodeRecord, offset: int = 0,
             lines: int | None = None) -> bytes:
    return remote.read_log(session, record.node, record.job_dir, offset, lines)


def stop(session: Session, job: JobRecord, records: list[NodeRecord] | None = None) -> dict[str, int | None]:
    """Run the stop script on these nodes (default: all of the job's) at once."""
    records = job.nodes if records is None else records
    by_name = {r.name: r for r in records}

    def stop_one(node) -> int | None:
        try:
            return remote.stop(session, by_name[node.name])
        except RemoteError:
            return None

    return fan_out([r.node for r in records], stop_one)


def dump_stacks(session: Session, job: JobRecord) -> dict[str, str]:
    by_name = {r.name: r for r in job.nodes}
    return fan_out([n.node for n in job.nodes], lambda node: remote.dump_stacks(session, by_name[node.name], job.id))


def relaunch(request: LaunchRequest, job: JobRecord, exclude: tuple[str, ...]) -> None:
    """The same nodes in the same order, without `exclude`."""
    request.nodes = [n.name for n in job.nodes if n.name not in exclude]


def doctor(session: Session, inventory: Inventory, names: list[str] | None) -> DoctorReport:
    """Every node's facts at once (versions, GPUs, disk, clock, route to the master)."""
    selected = inventory.select(names)
    facts = checks.gather(session, selected, inventory.master_port, deep=True)
    hard, soft = checks.problems(facts)
    return DoctorReport(facts=facts, hard=hard, soft=soft, smoke_nodes=[n.name for n in selected])
