"""The scheduler interface: what every way of running a job on nodes provides, and the small data it passes.

A scheduler is a module beside this one whose constants and functions match `Scheduler` name for name and signature
for signature (tests/test_scheduler_seam.py checks it). Everything else (planning, the per-node wrapper, the store,
watching, fail-fast, restarts, logs, the CLI) is shared and calls these functions through the registry
(`schedulers.get(name)`, `schedulers.for_job(job)`), never a scheduler by name.

The life of a launch, in the order the shared code calls the interface:
`plan` (a dry run, touching nothing) -> `describe` (what `--dry-run` prints) -> the job is recorded with the
scheduler's name and `Planned.facts` -> `submit` consumes the same `Planned` -> `observe` / `read_log` while it runs
-> `stop` (every rank or some), `dump_stacks` on a hang -> `relaunch` on a restart.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from orchestrator.cluster.inventory import Inventory
from orchestrator.cluster.ssh import Session
from orchestrator.cluster.sync import SyncStats
from orchestrator.errors import OrchError
from orchestrator.jobs.inputs import JobInputs
from orchestrator.jobs.plan import JobPlan, JobSpec
from orchestrator.jobs.states import Probe
from orchestrator.jobs.store import JobRecord, NodeRecord, Store


@dataclass
class LaunchRequest:
    """A launch as the CLI parsed it."""

    command: list[str]
    nodes: list[str] | None = None  # names in rank order; a scheduler that picks nodes also takes a count ["2"]
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
    exclude: list[str] = field(default_factory=list)  # nodes a scheduler that picks nodes must not give the job
    notify: str | None = None  # run on the controller with the job's JSON on stdin when it ends/fails/hangs/restarts

    def to_json(self) -> dict:
        data = dict(vars(self))
        data["project_dir"] = str(self.project_dir.resolve())
        return data

    @classmethod
    def from_json(cls, data: dict) -> "LaunchRequest":
        return cls(**{**data, "project_dir": Path(data["project_dir"])})


def make_spec(request: LaunchRequest, job_id: str) -> JobSpec:
    """The planner's view of a request."""
    return JobSpec(job_id=job_id, nodes=request.nodes, command=request.command, nproc_per_node=request.nproc_per_node,
                   env=request.env, project_name=request.project_dir.resolve().name or "project",
                   templates=request.templates)


@dataclass
class Planned:
    """A dry run: everything a submit needs, computed without touching a node. `describe` prints it, `submit`
    consumes it. Without `rendered`, the wrappers are still empty (a draft that checked the request and names every
    rank's folder; the submit renders them)."""

    request: LaunchRequest
    inventory: Inventory
    spec: JobSpec
    plan: JobPlan
    inputs: JobInputs
    rendered: bool
    facts: dict = field(default_factory=dict)  # recorded with the job before the submit (where its files live)
    scripts: dict[str, str] = field(default_factory=dict)  # the scheduler's own scripts by file name, when rendered
    templates: Future | None = None  # a draft's templates, loading in the background for the submit


@dataclass
class Submitted:
    """What a submit did: the plan as it runs (a real port where the dry run had none), what the sync sent, the
    headline `orch launch` prints ("started on", "submitted as ... job 12 for") and the run folder's extra files."""

    plan: JobPlan
    synced: dict[str, SyncStats]
    headline: str
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RankView:
    """One rank as one look saw it: its state (the scheduler's decision from its files and its own view), the
    files' facts (exit code, pgid, times, last line, progress), new log bytes, the node it was placed on."""

    state: str
    probe: Probe
    log: bytes = b""
    node: str | None = None


@dataclass(frozen=True)
class Observation:
    """One look at every rank of a job (a rank that was not looked at, e.g. a LOST node, is absent), with the
    scheduler's own state and reason for the job where it has one."""

    ranks: dict[int, RankView]
    state: str | None = None  # the queue's own word (RUNNING, PENDING, TIMEOUT); None for a scheduler without one
    reason: str | None = None  # why it waits (Resources, Priority)
    nodes: str | None = None  # the nodes the scheduler gave the job, as it writes them
    master: str | None = None  # master address:port when only the running job knows it
    ended_by: str | None = None  # the scheduler itself ended the job (a time limit, a lost node): the root cause
    queued: bool = False  # waiting in the scheduler's queue: the job stays PENDING


@dataclass(frozen=True)
class DoctorTable:
    """A table a scheduler adds to `orch doctor` (cells may carry rich markup)."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]


@dataclass
class DoctorReport:
    """`orch doctor`'s findings: per-node facts, hard and soft problems, the nodes a smoke test runs on, extra
    `--json` fields and extra tables."""

    facts: list
    hard: list[str]
    soft: list[str]
    smoke_nodes: list[str]
    extra: dict = field(default_factory=dict)
    tables: list[DoctorTable] = field(default_factory=list)


class SubmitError(OrchError):
    """The job could not be started or submitted (a node failed its preflight, the scheduler refused it); the
    preflight's message lists one problem per line."""

    multiline = True


def preflight_failed(hard: list[str]) -> SubmitError:
    """The launch refused: one line per problem the preflight found."""
    return SubmitError("preflight checks failed (see `orch doctor`; --skip-checks to override):\n  "
                       + "\n  ".join(hard))


class Scheduler(Protocol):
    """How a job reaches its nodes, starts, is observed and stopped."""

    NAME: str  # stored with every job at record time; the registry's key
    TITLE: str  # how messages name it
    QUEUES: bool  # True: the scheduler arbitrates nodes (a busy node makes the job wait); False: orch locks them

    def plan(self, inventory: Inventory, request: LaunchRequest, job_id: str, render: bool = True) -> Planned:
        """The dry run: validate the request, rank order, every rank's folder (and wrappers when `render`)."""

    def describe(self, planned: Planned) -> str:
        """What `--dry-run` prints: every script that would run, secrets masked."""

    def submit(self, planned: Planned, store: Store, session: Session, job: JobRecord) -> Submitted:
        """Start (or queue) the recorded job; raises SubmitError or RemoteError, having recorded what started."""

    def observe(self, session: Session, job: JobRecord, offsets: dict[int, int] | None) -> Observation | None:
        """One look at every rank (new log bytes from `offsets` when given); None when nothing could be learnt."""

    def read_log(self, session: Session, job: JobRecord, record: NodeRecord, offset: int = 0,
                 lines: int | None = None) -> bytes:
        """A rank's log from byte `offset` (or only its last `lines` lines)."""

    def stop(self, session: Session, job: JobRecord, records: list[NodeRecord] | None = None
             ) -> dict[str, int | None]:
        """Stop these ranks (default: all) and sweep their processes: {node: tagged processes left (0 = clean),
        None = could not tell}. Ranks not named keep running."""

    def dump_stacks(self, session: Session, job: JobRecord) -> dict[str, str]:
        """Every Python process of the job with its stacks: {where: text}."""

    def relaunch(self, request: LaunchRequest, job: JobRecord, exclude: tuple[str, ...]) -> None:
        """Turn `job`'s request into its relaunch's, without the `exclude` nodes."""

    def doctor(self, session: Session, inventory: Inventory, names: list[str] | None) -> DoctorReport:
        """`orch doctor`'s checks for this scheduler's cluster."""
