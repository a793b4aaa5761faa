"""Job history in SQLite under $ORCH_HOME (mode 600; secret env values kept apart: `vault`), plus the local run
folder of each job."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator.cluster.inventory import Node
from orchestrator.errors import JobError
from orchestrator.jobs import vault
from orchestrator.jobs.states import FINAL as FINAL_STATES
from orchestrator.paths import orch_home

DEFAULT_SCHEDULER = "ssh"
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    state TEXT NOT NULL,
    command TEXT NOT NULL,
    master TEXT NOT NULL,
    nproc_per_node INTEGER NOT NULL,
    ssh_config TEXT,
    run_dir TEXT NOT NULL,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    ended REAL,
    root_cause TEXT,
    options TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS job_nodes (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    rank INTEGER NOT NULL,
    name TEXT NOT NULL,
    node TEXT NOT NULL,
    job_dir TEXT NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER,
    exit_code INTEGER,
    started REAL,
    ended REAL,
    last_line TEXT,
    PRIMARY KEY (job_id, rank)
);
"""

# PRAGMA user_version from which the database holds no secret env value (see `vault`)
SECRETS_APART = 1


@dataclass
class NodeRecord:
    """One node's share of a job as last observed."""

    rank: int
    name: str
    node: Node
    job_dir: str
    state: str = "PENDING"
    pid: int | None = None
    exit_code: int | None = None
    started: float | None = None
    ended: float | None = None
    last_line: str = ""
    quiet_s: float | None = None  # observed, not stored: seconds since this node's log last grew


@dataclass
class JobRecord:
    id: str
    created: float
    state: str
    command: list[str]
    master: str
    nproc_per_node: int
    ssh_config: str | None
    run_dir: str
    stop_requested: bool = False
    ended: float | None = None
    root_cause: str | None = None
    nodes: list[NodeRecord] = field(default_factory=list)
    # how to relaunch it: the launch request, inventory path, restart policy, attempt number and first job id
    options: dict = field(default_factory=dict)

    @property
    def scheduler(self) -> str:
        """The name of the scheduler the job was recorded with (a job recorded before names were stored: ssh)."""
        return (self.options.get("scheduler") or {}).get("name") or DEFAULT_SCHEDULER

    @property
    def attempt(self) -> int:
        return int(self.options.get("attempt", 0))

    def to_json(self) -> dict:
        """The `orch status JOB --json` shape."""
        return {
            "id": self.id, "state": self.state, "created": self.created, "ended": self.ended,
            "command": self.command, "master": self.master, "nproc_per_node": self.nproc_per_node,
            "root_cause": self.root_cause, "run_dir": self.run_dir, "attempt": self.attempt,
            "restart_of": self.options.get("restart_of"), "restarted_as": self.options.get("restarted_as"),
            "replaced": self.options.get("replaced", {}),  # {failed node: the spare in its place}
            "scheduler": {"name": self.scheduler, **{k: self.options.get("scheduler", {}).get(k)
                                                     for k in ("job_id", "state", "reason")}},
            "progress": self.options.get("progress"),
            "nodes": [
                {"name": n.name, "rank": n.rank, "state": n.state, "exit_code": n.exit_code, "pid": n.pid,
                 "started": n.started, "ended": n.ended, "last_line": n.last_line}
                for n in self.nodes
            ],
        }


class Store:
    """Thin typed access to the job database. Each call opens its own short transaction."""

    def __init__(self, path: Path | None = None):
        self.path = path or orch_home() / "jobs.db"
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # created 600 before SQLite opens it: its journal files take the database's mode
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        if self.path.stat().st_mode & 0o077:
            self.path.chmod(0o600)  # a database an older orch left readable
        with self._db() as db:
            db.executescript(SCHEMA)
            if db.execute("PRAGMA user_version").fetchone()[0] < SECRETS_APART:
                _move_secrets_out(db, self.path.parent)

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    def run_dir(self, job_id: str) -> Path:
        return self.path.parent / "runs" / job_id

    def add(self, job: JobRecord) -> None:
        """Record a new job; its secret env values go to its secrets file, `***` to the database."""
        options, envs = vault.seal(self.path.parent, job.id, job.options, {n.rank: n.node.env for n in job.nodes})
        with self._db() as db:
            db.execute(
                "INSERT INTO jobs (id, created, state, command, master, nproc_per_node, ssh_config, run_dir, options)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job.id, job.created, job.state, json.dumps(job.command), job.master, job.nproc_per_node,
                 job.ssh_config, job.run_dir, json.dumps(options)),
            )
            db.executemany(
                "INSERT INTO job_nodes (job_id, rank, name, node, job_dir, state) VALUES (?, ?, ?, ?, ?, ?)",
                [(job.id, n.rank, n.name, json.dumps({**asdict(n.node), "env": envs[n.rank]}), n.job_dir, n.state)
                 for n in job.nodes],
            )

    def save_progress(self, job: JobRecord) -> None:
        """Write the observed job and node states back. A final state, once recorded by any process, stays: a
        watcher whose view is older (it still sees the job running) adopts the record instead of overwriting it.
        Options are not written here (see `set_option`)."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT state, ended, root_cause FROM jobs WHERE id=?", (job.id,)).fetchone()
            if row is not None and row["state"] in FINAL_STATES and row["state"] != job.state:
                job.state, job.ended, job.root_cause = row["state"], row["ended"], row["root_cause"]
                _adopt_nodes(job, db.execute("SELECT * FROM job_nodes WHERE job_id=?", (job.id,)).fetchall())
                return
            db.execute("UPDATE jobs SET state=?, ended=?, root_cause=?, stop_requested=MAX(stop_requested, ?),"
                       " master=? WHERE id=?",
                       (job.state, job.ended, job.root_cause, int(job.stop_requested), job.master, job.id))
            db.executemany(
                "UPDATE job_nodes SET state=?, pid=?, exit_code=?, started=?, ended=?, last_line=?, name=?"
                " WHERE job_id=? AND rank=?",
                [(n.state, n.pid, n.exit_code, n.started, n.ended, n.last_line, n.name, job.id, n.rank)
                 for n in job.nodes],
            )

    def set_option(self, job: JobRecord, key: str, value: object) -> None:
        """Set one job option in the database and in `job`, keeping what other processes wrote to the others."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT options FROM jobs WHERE id=?", (job.id,)).fetchone()
            options = json.loads(row["options"] or "{}")
            options[key] = value
            db.execute("UPDATE jobs SET options=? WHERE id=?", (json.dumps(options), job.id))
        job.options = options

    def flags(self, job_id: str) -> tuple[bool, dict]:
        """(stop_requested, options) as other processes (a stop, the supervisor) last wrote them."""
        with self._db() as db:
            row = db.execute("SELECT stop_requested, options FROM jobs WHERE id=?", (job_id,)).fetchone()
        return bool(row["stop_requested"]), json.loads(row["options"] or "{}")

    def relaunch_request(self, job: JobRecord, given: dict[str, str]) -> dict:
        """`job`'s launch request with its secret env values read back (`vault.relaunch_request`)."""
        return vault.relaunch_request(self.path.parent, job.id, job.options, given)

    def mark_stop_requested(self, job_id: str) -> None:
        with self._db() as db:
            db.execute("UPDATE jobs SET stop_requested=1 WHERE id=?", (job_id,))

    def get(self, job_id: str | None = None) -> JobRecord:
        """A job by id (a unique prefix works), or the most recent job when `job_id` is None."""
        with self._db() as db:
            if job_id is None:
                rows = db.execute("SELECT * FROM jobs ORDER BY created DESC LIMIT 1").fetchall()
                if not rows:
                    raise JobError("no jobs yet: start one with `orch launch`")
            else:
                rows = db.execute("SELECT * FROM jobs WHERE id = ? OR id LIKE ? ORDER BY created DESC",
                                  (job_id, _escape_like(job_id) + "%")).fetchall()
                exact = [r for r in rows if r["id"] == job_id]
                rows = exact or rows
                if not rows:
                    raise JobError(f"no job {job_id!r} (see `orch status` for recent jobs)")
                if len(rows) > 1:
                    raise JobError(f"job id {job_id!r} is ambiguous: {', '.join(r['id'] for r in rows[:5])}")
            row = rows[0]
            nodes = db.execute("SELECT * FROM job_nodes WHERE job_id=? ORDER BY rank", (row["id"],)).fetchall()
        return _job_from_rows(row, nodes)

    def recent(self, limit: int = 20) -> list[JobRecord]:
        with self._db() as db:
            ids = [r["id"] for r in db.execute("SELECT id FROM jobs ORDER BY created DESC LIMIT ?", (limit,))]
        return [self.get(job_id) for job_id in ids]

    def active(self) -> list[JobRecord]:
        """Jobs not yet in a final state."""
        with self._db() as db:
            ids = [r["id"] for r in db.execute(
                "SELECT id FROM jobs WHERE state IN ('PENDING','STARTING','RUNNING') ORDER BY created")]
        return [self.get(job_id) for job_id in ids]


def _move_secrets_out(db: sqlite3.Connection, home: Path) -> None:
    """Move the secret env values an older orch wrote into the database to each job's secrets file, overwriting
    the freed pages (secure_delete), once per database."""
    db.execute("PRAGMA secure_delete = ON")
    db.execute("BEGIN IMMEDIATE")
    if db.execute("PRAGMA user_version").fetchone()[0] >= SECRETS_APART:
        return  # another process did it meanwhile
    for job in db.execute("SELECT id, options FROM jobs").fetchall():
        if vault.secrets_of(home, job["id"]):
            continue
        nodes = db.execute("SELECT rank, node FROM job_nodes WHERE job_id=?", (job["id"],)).fetchall()
        node_data = {n["rank"]: json.loads(n["node"]) for n in nodes}
        options, envs = vault.seal(home, job["id"], json.loads(job["options"] or "{}"),
                                   {rank: data.get("env", {}) for rank, data in node_data.items()})
        db.execute("UPDATE jobs SET options=? WHERE id=?", (json.dumps(options), job["id"]))
        db.executemany("UPDATE job_nodes SET node=? WHERE job_id=? AND rank=?",
                       [(json.dumps({**data, "env": envs[rank]}), job["id"], rank) for rank, data in node_data.items()])
    db.execute(f"PRAGMA user_version = {SECRETS_APART}")


def _observed(row: sqlite3.Row) -> dict:
    """The fields of a node row that watchers observe (and `save_progress` writes)."""
    return {"state": row["state"], "pid": row["pid"], "exit_code": row["exit_code"], "started": row["started"],
            "ended": row["ended"], "last_line": row["last_line"] or ""}


def _adopt_nodes(job: JobRecord, rows: list[sqlite3.Row]) -> None:
    """Take the recorded node states into `job`'s node records."""
    by_rank = {r["rank"]: r for r in rows}
    for record in job.nodes:
        for name, value in _observed(by_rank[record.rank]).items():
            setattr(record, name, value)


def _escape_like(text: str) -> str:
    return text.replace("%", "").replace("_", "")


def _job_from_rows(row: sqlite3.Row, nodes: list[sqlite3.Row]) -> JobRecord:
    """A job from its database rows, secret env values as `***` (`Store.relaunch_request` reads them back)."""
    return JobRecord(
        id=row["id"], created=row["created"], state=row["state"], command=json.loads(row["command"]),
        master=row["master"], nproc_per_node=row["nproc_per_node"], ssh_config=row["ssh_config"],
        run_dir=row["run_dir"], stop_requested=bool(row["stop_requested"]), ended=row["ended"],
        root_cause=row["root_cause"], options=json.loads(row["options"] or "{}"),
        nodes=[
            NodeRecord(rank=n["rank"], name=n["name"], node=_node_from_json(n["node"]),
                       job_dir=n["job_dir"], **_observed(n))
            for n in nodes
        ],
    )


def _node_from_json(text: str) -> Node:
    data = json.loads(text)
    data["setup"] = tuple(data.get("setup", ()))
    return Node(**data)


def new_job_id() -> str:
    """A sortable, shell-safe job id: `YYYYmmdd-HHMMSS-xxxx`."""
    import secrets

    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
