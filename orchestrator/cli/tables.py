"""Rich tables for `orch status`."""

from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

from orchestrator.jobs.store import JobRecord

STATE_STYLE = {"SUCCEEDED": "green", "FAILED": "red", "LOST": "red", "STOPPED": "yellow", "RUNNING": "cyan"}


def _when(ts: float | None) -> str:
    return time.strftime("%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _state(state: str) -> str:
    style = STATE_STYLE.get(state)
    return f"[{style}]{state}[/{style}]" if style else state


def jobs_table(jobs: list[JobRecord]) -> None:
    table = Table(title="recent jobs")
    for column in ("job", "state", "nodes", "procs/node", "created", "command"):
        table.add_column(column)
    for job in jobs:
        table.add_row(job.id, _state(job.state), ",".join(n.name for n in job.nodes), str(job.nproc_per_node),
                      _when(job.created), " ".join(job.command)[:60])
    Console().print(table)


def job_table(job: JobRecord) -> None:
    console = Console()
    console.print(f"job {job.id}  {_state(job.state)}  master {job.master}  {' '.join(job.command)}")
    if job.root_cause:
        console.print(f"root cause: {job.root_cause}", markup=False)
    table = Table()
    for column in ("node", "rank", "state", "pid", "exit", "start", "end", "last log line"):
        table.add_column(column)
    for n in job.nodes:
        table.add_row(n.name, str(n.rank), _state(n.state), str(n.pid or "-"),
                      "-" if n.exit_code is None else str(n.exit_code), _when(n.started), _when(n.ended),
                      (n.last_line or "")[:80])
    console.print(table)
