"""Observe a job through its scheduler, update the store, stop it everywhere, and enforce fail-fast.

The same for every scheduler: one `observe` (a look at every rank), then the store's flags (read after it, see
`refresh`), then the shared decisions (states, root cause, progress) and the record.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Callable

from orchestrator.cluster.ssh import Session, fan_out
from orchestrator.errors import RemoteError
from orchestrator.jobs import feed, schedulers, states
from orchestrator.jobs.faults import failpoint
from orchestrator.jobs.schedulers.base import Observation, RankView
from orchestrator.jobs.store import JobRecord, NodeRecord, Store


def apply_view(record: NodeRecord, view: RankView) -> None:
    """Fold one look at a rank into its record."""
    record.state = view.state
    record.name = view.node or record.name
    probe = view.probe
    if probe.reachable:
        record.pid = probe.pgid or record.pid
        record.exit_code = probe.exit_code
        record.started = probe.started or record.started
        record.ended = probe.ended or record.ended
        record.last_line = probe.last_line or record.last_line
        record.quiet_s = probe.quiet_s


def settle(job: JobRecord, session: Session | None = None) -> None:
    """Recompute the job state, end time and root cause (with the failed rank's last error lines)."""
    node_states = [n.state for n in job.nodes]
    job.state = states.job_state(node_states, job.stop_requested)
    failure = job.options.get("failure")  # orch itself stopped the job as failed (a hang): whatever the nodes
    if failure and job.state in (states.STOPPED, states.FAILED, states.LOST) and not job.stop_requested:
        job.state, job.root_cause = states.FAILED, failure
    if job.state in states.FINAL and job.ended is None:
        job.ended = time.time()
    if job.root_cause is None and not job.stop_requested:
        job.root_cause = states.root_cause([n.name for n in job.nodes], [n.rank for n in job.nodes], node_states,
                                           [n.exit_code for n in job.nodes], [n.ended for n in job.nodes])
        culprit = next((n for n in job.nodes if job.root_cause and f"node {n.name} " in job.root_cause), None)
        if job.root_cause and culprit and culprit.state == states.FAILED and session is not None:
            tail = _log_tail(session, job, culprit)
            error = states.last_error(tail.splitlines())
            if error:
                job.root_cause += "\n" + "\n".join(f"  {line}" for line in error)


def _log_tail(session: Session, job: JobRecord, record: NodeRecord, lines: int = 400) -> str:
    try:
        return schedulers.for_job(job).read_log(session, job, record, lines=lines).decode("utf-8", "replace")
    except RemoteError:
        return ""


def refresh(store: Store, session: Session, job: JobRecord, offsets: dict[int, int] | None = None
            ) -> dict[int, bytes]:
    """Look at every rank at once, update `job` and the store; return new log bytes per rank if `offsets` given."""
    if job.state in states.FINAL:
        return {}
    if job.state == states.PENDING and not submitted(job):
        job.stop_requested, job.options = store.flags(job.id)
        if not submitted(job):
            if launcher_died(job):
                abandon(store, session, job)
            return {}
    failpoint("before-observe")
    observed = schedulers.for_job(job).observe(session, job, offsets)
    # read after the observation: whoever stopped the ranks (a user's stop, a hang report) flagged why before
    # stopping, so ranks seen stopped always come with the reason
    job.stop_requested, job.options = store.flags(job.id)
    if observed is None:
        return {}
    return fold(store, session, job, observed)


def submitted(job: JobRecord) -> bool:
    """Whether the job's launcher has handed it to its scheduler (before that, a PENDING job is the launcher's:
    a queued job is PENDING too, once submitted)."""
    return job.state != states.PENDING or bool((job.options.get("scheduler") or {}).get("submitted"))


def fold(store: Store, session: Session, job: JobRecord, observed: Observation) -> dict[int, bytes]:
    """Fold one observation into `job` and the store: ranks, the scheduler's own state, the cause when the
    scheduler itself ended the job, rank 0's progress, the metric feed; then settle and record."""
    job.master = observed.master or job.master
    chunks: dict[int, bytes] = {}
    seen: dict[str, feed.Seen] = {}
    for record in job.nodes:
        view = observed.ranks.get(record.rank)
        if view is not None:
            apply_view(record, view)
            chunks[record.rank] = view.log
            seen[record.name] = view.probe.feed
            if record.rank == 0:
                keep_progress(store, job, view.probe.progress)
    info = job.options.get("scheduler") or {}
    if observed.state is not None and (observed.state, observed.reason) != (info.get("state"), info.get("reason")):
        store.set_option(job, "scheduler", {**info, "state": observed.state, "reason": observed.reason,
                                            "nodes": observed.nodes})
    if observed.ended_by and "failure" not in job.options and not job.stop_requested:
        store.set_option(job, "failure", observed.ended_by)
    settle(job, session)
    if observed.queued:
        job.state = states.PENDING
    store.save_progress(job)
    feed.keep(job.run_dir, seen)  # new metric lines, every rank's timing, GPUs
    if job.state in states.FINAL:
        keep_logs(session, job)
    return chunks


def keep_progress(store: Store, job: JobRecord, text: str) -> None:
    """Record the training worker's latest progress (step/total, epoch, loss, tokens/s, ETA) when it changed."""
    try:
        progress = json.loads(text) if text else None
    except ValueError:  # caught mid-write by an older worker: the next poll reads it whole
        return
    if isinstance(progress, dict) and progress != job.options.get("progress"):
        store.set_option(job, "progress", progress)


def launcher_died(job: JobRecord) -> bool:
    """A PENDING job whose `orch launch` process no longer exists on this host will never finish starting."""
    launcher = job.options.get("launcher") or {}
    if launcher.get("host") != socket.gethostname() or not launcher.get("pid"):
        return False
    try:
        os.kill(int(launcher["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def abandon(store: Store, session: Session, job: JobRecord) -> None:
    """Clean up a launch that died half-way: stop whatever started, record the job FAILED and why."""
    started = job.options.get("started_nodes", [])
    pending = [n.name for n in job.nodes if n.name not in started]
    where = (f"after starting {', '.join(started)} and before starting {', '.join(pending)}" if started
             else "before any node was started")
    give_up_launch(store, session, job, f"launch interrupted: the `orch launch` process died {where}",
                   states.STOPPED)


def give_up_launch(store: Store, session: Session, job: JobRecord, why: str, node_state: str) -> None:
    """Sweep every node of a launch that cannot finish (twice where something was left) and record the job
    FAILED: a node the sweep left processes on, or could not reach, is named and LOST, never called clean."""
    left = stop_nodes(session, job)
    dirty = [n for n in job.nodes if left.get(n.name) != 0]
    if dirty:
        left.update(stop_nodes(session, job, dirty))
    leftovers = []
    for record in job.nodes:
        count = left.get(record.name)
        record.state = node_state if count == 0 else states.LOST
        if count != 0:
            leftovers.append(f"{record.name} ({'unreachable' if count is None else f'{count} process(es) left'})")
    job.state, job.ended = states.FAILED, time.time()
    job.root_cause = why + (f"; not clean on {', '.join(leftovers)}: `orch stop {job.id}` sweeps again"
                            if leftovers else "")
    store.save_progress(job)


def stop_nodes(session: Session, job: JobRecord, records: list[NodeRecord] | None = None
               ) -> dict[str, int | None]:
    """Stop these ranks (default: all of the job's) through the job's scheduler; tagged processes left per node
    (0 = clean, None = unreachable). The other ranks keep running."""
    return schedulers.for_job(job).stop(session, job, records)


def stop_job(store: Store, session: Session, job: JobRecord) -> dict[str, int | None]:
    """Stop the job on every node; the job ends STOPPED (or keeps the final state it already had)."""
    already_final = job.state in states.FINAL
    if not already_final:
        job.stop_requested = True
        store.mark_stop_requested(job.id)
    left = stop_nodes(session, job)
    if not already_final:
        refresh(store, session, job)
    return left


def fail_fast(store: Store, session: Session, job: JobRecord) -> bool:
    """If a node failed or was lost while others still run, stop the others now. True if it acted."""
    if not states.needs_fail_fast([n.state for n in job.nodes]):
        return False
    running = [n for n in job.nodes if n.state in (states.RUNNING, states.STARTING)]
    settle(job, session)  # records the root cause before the consequences show up
    # the failed node too (its orphaned workers must go), but not a lost one: it cannot be reached, and waiting
    # on it would delay stopping the others; `orch stop` sweeps it once it is back
    stop_nodes(session, job, [n for n in job.nodes if n.state != states.LOST])
    refresh(store, session, job)
    for record in running:  # stopped because of another node's failure, not by the user
        if record.state in (states.STOPPED, states.LOST) and record.exit_code is None:
            record.state = states.STOPPED
    settle(job)
    store.save_progress(job)
    return True


def keep_logs(session: Session, job: JobRecord) -> None:
    """Copy every node's log into the local run folder once the job has ended."""
    logs_dir = Path(job.run_dir) / "logs"
    missing = [n for n in job.nodes if not (logs_dir / f"{n.rank}-{n.name}.log").exists()]
    if not missing:
        return
    logs_dir.mkdir(parents=True, exist_ok=True)
    scheduler = schedulers.for_job(job)
    by_node = {r.node.name: r for r in missing}
    try:
        texts = fan_out([r.node for r in missing], lambda node: scheduler.read_log(session, job, by_node[node.name]))
    except Exception:  # an unreachable node keeps no local copy; the others still do
        return
    for record in missing:
        (logs_dir / f"{record.rank}-{record.name}.log").write_bytes(texts[record.node.name])


def wait(store: Store, session: Session, job: JobRecord, poll_s: float = 0.5, timeout: float | None = None,
         on_tick: Callable[[JobRecord], None] | None = None) -> JobRecord:
    """Poll until the job reaches a final state; `on_tick` (fail-fast, hang checks) runs after each poll,
    plain fail-fast when none is given."""
    deadline = None if timeout is None else time.monotonic() + timeout
    tick = on_tick or (lambda j: fail_fast(store, session, j))
    while job.state not in states.FINAL:
        refresh(store, session, job)
        tick(job)
        if job.state in states.FINAL or (deadline and time.monotonic() > deadline):
            break
        time.sleep(poll_s)
    return job
