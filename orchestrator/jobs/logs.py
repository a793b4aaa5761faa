"""Job logs: rank 0 by default, one node, or every node merged with stable `[node|rank]` prefixes.

Following polls every node over its reused connection (the same probe that reads the job state), prints only
whole lines, and ends when the job has ended and every log is drained. Ended jobs read the local copy.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, TextIO

from orchestrator.cluster.ssh import Session
from orchestrator.errors import JobError
from orchestrator.jobs import schedulers, states, watch
from orchestrator.jobs.store import JobRecord, NodeRecord, Store


def pick_nodes(job: JobRecord, node: str | None, every: bool) -> list[NodeRecord]:
    """Which nodes' logs to show: `--all`, `--node NAME`, or rank 0."""
    if every:
        return list(job.nodes)
    if node is not None:
        chosen = [n for n in job.nodes if n.name == node]
        if not chosen:
            raise JobError(f"job {job.id} has no node {node!r} (nodes: {', '.join(n.name for n in job.nodes)})")
        return chosen
    return [job.nodes[0]]


class LineSplitter:
    """Byte chunks per rank -> whole lines: a partial last line waits for the rest (`final`: nothing more comes;
    empty lines are then dropped)."""

    def __init__(self, records: list[NodeRecord]):
        self.pending = {r.rank: b"" for r in records}

    def split(self, rank: int, chunk: bytes, final: bool = False) -> list[bytes]:
        lines = (self.pending[rank] + chunk).split(b"\n")
        self.pending[rank] = b"" if final else lines.pop()
        return [line for line in lines if line or not final]


class LinePrinter:
    """Turns byte chunks per rank into whole, optionally prefixed, lines."""

    def __init__(self, records: list[NodeRecord], prefixed: bool, out: TextIO):
        self.width = max(len(f"[{r.name}|{r.rank}]") for r in records)
        self.prefixes = {r.rank: f"[{r.name}|{r.rank}]".ljust(self.width) + " " if prefixed else "" for r in records}
        self.lines = LineSplitter(records)
        self.out = out

    def feed(self, rank: int, chunk: bytes, final: bool = False) -> None:
        for line in self.lines.split(rank, chunk, final):
            self.out.write(self.prefixes[rank] + line.decode("utf-8", "replace").rstrip("\r") + "\n")
        self.out.flush()


def local_log(job: JobRecord, record: NodeRecord) -> Path:
    return Path(job.run_dir) / "logs" / f"{record.rank}-{record.name}.log"


def show(store: Store, session: Session, job: JobRecord, records: list[NodeRecord], prefixed: bool,
         out: TextIO = sys.stdout) -> None:
    """Print the logs once (the local copy when the job has ended and it was kept)."""
    watch.refresh(store, session, job)
    printer = LinePrinter(records, prefixed, out)
    scheduler = schedulers.for_job(job)
    for record in records:
        path = local_log(job, record)
        data = path.read_bytes() if path.exists() else scheduler.read_log(session, job, record)
        printer.feed(record.rank, data, final=True)


def follow(store: Store, session: Session, job: JobRecord, records: list[NodeRecord], prefixed: bool,
           out: TextIO = sys.stdout, poll_s: float = 0.5, on_tick: Callable[[JobRecord], None] | None = None) -> None:
    """Stream new log lines until the job ends; `on_tick` runs after each poll (fail-fast lives there)."""
    printer = LinePrinter(records, prefixed, out)
    offsets = {r.rank: 0 for r in records}
    wanted = {r.rank for r in records}
    said_pending = False
    while True:
        was_final = job.state in states.FINAL
        chunks = watch.refresh(store, session, job, offsets) if not was_final else _drain(session, job, records,
                                                                                          offsets)
        for rank, chunk in chunks.items():
            if rank in wanted and chunk:
                offsets[rank] += len(chunk)
                printer.feed(rank, chunk)
        if on_tick:
            on_tick(job)
        if job.state == states.PENDING and not said_pending and (job.options.get("scheduler") or {}).get("reason"):
            info = job.options["scheduler"]
            print(f"orch: job {job.id} is queued in {schedulers.for_job(job).TITLE} (job {info.get('job_id')}, "
                  f"PENDING: {info['reason']}); waiting for it to start", file=sys.stderr, flush=True)
            said_pending = True
        if was_final and not any(chunks.values()):
            for rank in wanted:
                printer.feed(rank, b"", final=True)
            return
        if not any(chunks.values()) and job.state not in states.FINAL:  # just ended: drain at once
            time.sleep(poll_s)


def _drain(session: Session, job: JobRecord, records: list[NodeRecord], offsets: dict[int, int]) -> dict[int, bytes]:
    """After the end: read what is left of each log."""
    scheduler = schedulers.for_job(job)
    chunks = {}
    for record in records:
        try:
            chunk = scheduler.read_log(session, job, record, offsets[record.rank])
        except Exception:
            chunk = b""
        chunks[record.rank] = chunk
    return chunks
