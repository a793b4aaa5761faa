"""Supervise a job until it ends: fail-fast, hang detection with stack dumps, and restarts on failure.

The same loop runs inside an attached `orch launch` (printing rank 0's log) and in the detached watcher that
`orch launch --detach` starts, so the policy holds whether or not a terminal stays open.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from orchestrator.cluster.inventory import EMBEDDED_DEFAULT, Inventory, load_inventory, parse_inventory
from orchestrator.cluster.ssh import Session
from orchestrator.errors import OrchError
from orchestrator.jobs import notify, schedulers, spares, states, watch
from orchestrator.jobs.launch import LaunchRequest, launch
from orchestrator.jobs.store import JobRecord, Store, new_job_id

Follow = Callable[[Store, Session, JobRecord, Callable[[JobRecord], None]], None]


class Guard:
    """Runs after every poll: stops all nodes when one fails, and reports (or fails) a hung job."""

    def __init__(self, store: Store, session: Session, hang_timeout: float | None, on_hang: str,
                 say: Callable[[str], None] = print):
        self.store, self.session = store, session
        self.hang_timeout, self.on_hang, self.say = hang_timeout, on_hang, say
        self.reported_at: float | None = None  # when the current hang was last reported

    def __call__(self, job: JobRecord) -> None:
        if watch.fail_fast(self.store, self.session, job):
            self.say(f"orch: job {job.id}: {job.root_cause.splitlines()[0] if job.root_cause else 'a node failed'}"
                     "; stopped the other nodes")
            return
        self.check_hang(job)

    def check_hang(self, job: JobRecord) -> None:
        if self.hang_timeout is None or job.state != states.RUNNING:
            return
        quiet = [n.quiet_s for n in job.nodes if n.state == states.RUNNING]
        hung = bool(quiet) and all(q is not None and q >= self.hang_timeout for q in quiet)
        if not hung:
            self.reported_at = None
            return
        if self.reported_at is not None and time.monotonic() - self.reported_at < self.hang_timeout:
            return  # `--on-hang wait`: a hang that goes on is reported again every hang_timeout seconds
        self.reported_at = time.monotonic()
        report = self.dump(job)
        laggard = max((n for n in job.nodes if n.quiet_s is not None), key=lambda n: n.quiet_s)
        message = (f"hang: no log output from any rank for {self.hang_timeout:.0f} s; node {laggard.name} "
                   f"(node_rank {laggard.rank}) has been quiet longest ({laggard.quiet_s:.0f} s); stacks: {report}")
        self.say(f"orch: job {job.id}: {message}")
        notify.notify(job, "hang", message, self.say)
        if self.on_hang == "fail":
            self.store.set_option(job, "failure", message)  # saved first: any watcher then settles it as FAILED
            watch.stop_nodes(self.session, job)
            watch.refresh(self.store, self.session, job)

    def dump(self, job: JobRecord) -> Path:
        """Collect stack dumps from every node into the run folder; return the report's path."""
        began = time.strftime('%Y%m%d-%H%M%S')  # the report is named after the moment the dump began
        dumps = schedulers.for_job(job).dump_stacks(self.session, job)
        path = Path(job.run_dir) / f"hang-{began}.txt"
        path.write_text("".join(f"===== {name}\n{text}\n" for name, text in dumps.items()))
        return path


def reload_inventory(path: str) -> Inventory:
    """The inventory a job was launched with (the embedded default if it had none)."""
    if path.startswith("<"):
        return parse_inventory(EMBEDDED_DEFAULT, path)
    return load_inventory(path)


def restart(store: Store, job: JobRecord, exclude: tuple[str, ...] = (), use_spares: bool = False,
            nodes: list[str] | None = None, env: dict[str, str] | None = None) -> JobRecord:
    """Relaunch a job's request as a new job: on `nodes` when given, else on the job's nodes without `exclude`,
    where `use_spares` puts a healthy spare in the place of each failed or excluded node (the world size stays);
    `env` over the request's; training resumes from its checkpoint. JobError, nothing launched, when a secret env
    value of the job is gone."""
    request = LaunchRequest.from_json(store.relaunch_request(job, env or {}))
    attempt = job.attempt + 1
    request.env = {**request.env, "ORCH_RESTART_COUNT": str(attempt), "ORCH_RESUME": "latest"}
    inventory = reload_inventory(job.options["inventory"])
    lineage = {"attempt": attempt, "restart_of": job.id, "first_job": job.options.get("first_job", job.id)}
    with Session(inventory.ssh_config) as session:
        replaced = spares.substitute(session, inventory, job, exclude) if use_spares and not nodes else {}
        schedulers.for_job(job).relaunch(request, job, tuple(name for name in exclude if name not in replaced))
        if request.nodes == []:
            raise OrchError("--exclude-node would leave no node to run on (and no healthy spare to take one's place)")
        if nodes:
            request.nodes = list(nodes)
        elif replaced:
            request.nodes = [replaced.get(name, name) for name in request.nodes]
            lineage.update(replaced=replaced, excluded=[name for name in exclude if name in replaced])
        new_job = launch(inventory, request, store, session, new_job_id(), lineage).job
    store.set_option(job, "restarted_as", new_job.id)
    return new_job


def gave_up(job: JobRecord) -> str | None:
    """The line that says a failed job used up its restarts, or None if it had none or was not the last."""
    limit = job.options.get("request", {}).get("max_restarts", 0)
    if job.state != states.FAILED or job.stop_requested or not limit or job.attempt < limit:
        return None
    return (f"orch: giving up: all {job.attempt + 1} attempts failed (--max-restarts {limit}; first job "
            f"{job.options.get('first_job', job.id)}, last job {job.id})")


def supervise(store: Store, job: JobRecord, follow: Follow | None = None, poll_s: float = 1.0,
              say: Callable[[str], None] = print) -> JobRecord:
    """Watch `job` (and the restarts it earns) until the last one ends; return that last job."""
    while True:
        request = job.options.get("request", {})
        with Session(job.ssh_config) as session:
            guard = Guard(store, session, request.get("hang_timeout"), request.get("on_hang", "fail"), say)
            if follow is not None:
                follow(store, session, job, guard)
            else:
                watch.wait(store, session, job, poll_s=poll_s, on_tick=guard)
        if job.state == states.FAILED and not job.stop_requested and job.attempt < request.get("max_restarts", 0):
            say(f"orch: job {job.id} FAILED; restart {job.attempt + 1} of {request['max_restarts']}")
            try:
                failed, job = job, restart(store, job, use_spares=True)
            except OrchError as exc:  # a secret's value gone, the inventory gone: the job ends FAILED as it is
                say(f"orch: not restarted: {exc}")
            else:
                say(f"orch: restarted as job {job.id}")
                if job.options.get("replaced"):
                    say(f"orch: job {job.id}: {spares.describe(job.options['replaced'])}")
                notify.notify(failed, "restart", job.id, say)
                continue
        notify.notify(job, notify.event_of_end(job), job.root_cause, say)
        if (line := gave_up(job)) is not None:
            say(line)
        return job
