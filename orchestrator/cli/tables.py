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


def doctor_table(facts, nodes) -> None:
    """One row per node; values that differ from rank 0's are shown in red."""
    console = Console()
    table = Table(title="orch doctor")
    keys = ("python", "torch", "transformers", "deepspeed", "cuda", "nccl")
    for column in ("node", "ssh ms", *keys, "gpus (busy)", "disk free", "clock skew", "iface to master"):
        table.add_column(column)
    reference = facts[0].versions if facts and facts[0].reachable else {}
    for node, f in zip(nodes, facts):
        if not f.reachable or f.error:
            table.add_row(f.name, "[red]unreachable[/red]" if not f.reachable else "-", f"[red]{f.error}[/red]")
            continue
        cells = []
        for key in keys:
            value = str(f.versions.get(key) or "-")
            cells.append(f"[red]{value}[/red]" if f.versions.get(key) != reference.get(key) else value)
        gpus = "-" if f.gpus is None else f"{f.gpus} ({f.gpu_busy or 0})"
        disk = "-" if f.disk_free_gb is None else f"{f.disk_free_gb:.1f} GB"
        skew = "-" if f.clock_skew_s is None else f"{f.clock_skew_s:+.2f} s"
        table.add_row(f.name, f"{f.latency_ms:.0f}", *cells, gpus, disk, skew, f.route or "-")
    console.print(table)
    routes = {f.route for f in facts[1:] if f.reachable and f.route}
    if len(routes) == 1:
        iface = routes.pop()
        console.print(f"nodes reach the master via {iface}: set NCCL_SOCKET_IFNAME={iface} and "
                      f"GLOO_SOCKET_IFNAME={iface} in [cluster.env] if the default interface differs", markup=False)
