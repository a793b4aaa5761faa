"""Tables for `orch status`, `orch doctor` and `orch data`: rich on a terminal, plain rows when piped."""

from __future__ import annotations

import time

from rich.cells import cell_len
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from orchestrator.jobs.store import JobRecord

STATE_STYLE = {"SUCCEEDED": "green", "FAILED": "red", "LOST": "red", "STOPPED": "yellow", "RUNNING": "cyan"}


def _when(ts: float | None) -> str:
    return time.strftime("%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _state(state: str) -> str:
    style = STATE_STYLE.get(state)
    return f"[{style}]{state}[/{style}]" if style else state


def console() -> Console:
    """stdout; when it is not a terminal, lines are never wrapped at its assumed 80 columns."""
    out = Console()
    out.soft_wrap = not out.is_terminal
    return out


def new_table(*columns: str, keys: int = 1, title: str | None = None) -> Table:
    """A table whose first `keys` columns hold ids or names: never wrapped or cut; long cells elsewhere fold."""
    table = Table(title=title)
    for index, column in enumerate(columns):
        table.add_column(column, no_wrap=index < keys, overflow="fold")
    return table


def print_table(table: Table, out: Console | None = None) -> None:
    """The rich table on a terminal wide enough to show every id/name column whole; otherwise (piped, redirected,
    too narrow) plain aligned rows with nothing cut. `--json` stays the machine format."""
    out = out or console()
    rows = [[_plain(out, column.header) for column in table.columns]]
    rows += [list(cells) for cells in zip(*([_plain(out, cell) for cell in column.cells] for column in table.columns))]
    widths = [max(cell_len(row[i]) for row in rows) for i in range(len(table.columns))]
    words = [max((cell_len(word) for row in rows for word in row[i].split()), default=1)
             for i in range(len(table.columns))]
    keys = [column.no_wrap for column in table.columns]
    needed = sum(w if key else word for w, word, key in zip(widths, words, keys)) + 3 * len(widths) + 1
    if out.is_terminal and needed <= out.width:
        for column, width in zip(table.columns, widths):
            column.min_width = width if column.no_wrap else None
        out.print(table)
        return
    if table.title:
        out.print(_plain(out, table.title), markup=False, highlight=False, soft_wrap=True)
    for row in rows:
        line = "  ".join(cell + " " * (width - cell_len(cell)) for cell, width in zip(row, widths))
        out.print(line.rstrip(), markup=False, highlight=False, soft_wrap=True)


def _plain(out: Console, cell: RenderableType) -> str:
    """A cell's text as rich would show it, without styles."""
    if isinstance(cell, Text):
        return cell.plain
    return out.render_str(cell).plain if isinstance(cell, str) else str(cell)


def jobs_table(jobs: list[JobRecord]) -> None:
    table = new_table("job", "state", "nodes", "procs/node", "created", "command", title="recent jobs")
    for job in jobs:
        table.add_row(job.id, _state(job.state), nodes_cell(job), str(job.nproc_per_node),
                      _when(job.created), " ".join(job.command)[:60])
    print_table(table)


def nodes_cell(job: JobRecord) -> str:
    """`node1,node3 (node3 for node2)`: the job's nodes, and which spare replaced which failed node."""
    replaced = job.options.get("replaced") or {}
    spares = ", ".join(f"{new} for {old}" for old, new in replaced.items())
    return ",".join(n.name for n in job.nodes) + (f" ({spares})" if spares else "")


def job_table(job: JobRecord, stragglers: list[dict] = ()) -> None:
    """The job, its root cause and its scheduler's state, one row per node, progress and stragglers."""
    from orchestrator.jobs.stragglers import describe

    out = console()
    out.print(f"job {job.id}  {_state(job.state)}  master {job.master}  {' '.join(job.command)}")
    if job.options.get("replaced"):
        excluded, before = job.options.get("excluded", []), job.options.get("restart_of")
        out.print("replaced: " + ", ".join(
            f"{old} by spare {new} ({'excluded from' if old in excluded else 'failed in'} job {before})"
            for old, new in job.options["replaced"].items()), markup=False)
    if job.root_cause:
        out.print(f"root cause: {job.root_cause}", markup=False)
    info = job.options.get("scheduler") or {}
    if info.get("state"):  # a scheduler with its own job and state (a queue)
        reason = f" ({info['reason']})" if info.get("reason") else ""
        out.print(f"{info['name']} job {info.get('job_id') or '-'}: {info['state']}{reason}", markup=False)
    table = new_table("node", "rank", "state", "pid", "exit", "start", "end", "last log line")
    for n in job.nodes:
        table.add_row(n.name, str(n.rank), _state(n.state), str(n.pid or "-"),
                      "-" if n.exit_code is None else str(n.exit_code), _when(n.started), _when(n.ended),
                      (n.last_line or "")[:80])
    print_table(table, out)
    if job.options.get("progress"):
        out.print(f"progress: {describe_progress(job.options['progress'])}", markup=False)
    for straggler in stragglers:
        out.print(f"straggler: {describe(straggler)}", markup=False)


def describe_progress(p: dict) -> str:
    """`step 10/20 (50%), epoch 0.62, loss 2.310, 1,234 tokens/s, ETA 0:01:23`."""
    import datetime

    parts = [f"step {p.get('step')}/{p.get('total')}"
             + (f" ({100 * p['step'] / p['total']:.0f}%)" if p.get("total") else ""), f"epoch {p.get('epoch')}"]
    parts += [f"loss {p['loss']:.3f}"] if isinstance(p.get("loss"), (int, float)) else []
    parts += [f"{p['tokens_per_s']:,.0f} tokens/s"] if isinstance(p.get("tokens_per_s"), (int, float)) else []
    parts += [f"ETA {datetime.timedelta(seconds=int(p['eta_s']))}"] if isinstance(p.get("eta_s"), int) else []
    return ", ".join(parts)


def doctor_table(facts) -> None:
    """One row per node; values that differ from rank 0's are shown in red."""
    out = console()
    keys = ("python", "torch", "transformers", "deepspeed", "cuda", "nccl")
    table = new_table("node", "ssh ms", *keys, "gpus (busy)", "disk free", "clock skew", "iface to master",
                      title="orch doctor")
    reference = facts[0].versions if facts and facts[0].reachable else {}
    for f in facts:
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
    print_table(table, out)
    routes = {f.route for f in facts[1:] if f.reachable and f.route}
    if len(routes) == 1:
        iface = routes.pop()
        out.print(f"nodes reach the master via {iface}: set NCCL_SOCKET_IFNAME={iface} and "
                  f"GLOO_SOCKET_IFNAME={iface} in [cluster.env] if the default interface differs", markup=False)


def extra_table(extra) -> None:
    """A table a scheduler adds to `orch doctor` (`DoctorTable`: title, columns, rows)."""
    table = new_table(*extra.columns, title=extra.title)
    for row in extra.rows:
        table.add_row(*row)
    print_table(table)
