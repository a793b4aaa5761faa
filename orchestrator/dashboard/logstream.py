"""The live log pane: a job's log lines as server-sent events, `[node|rank]`-prefixed, until the job has ended
and every log is drained. Logs are read through the job's scheduler (`read_log`: the rank's log from an offset;
it changes nothing), the job's state from the store (its supervisor keeps it); an ended job's kept local copy is
read when there is one."""

from __future__ import annotations

import re
import time
from typing import Iterator

from orchestrator.jobs import logs, schedulers, states
from orchestrator.jobs.store import JobRecord, NodeRecord, Store

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # tqdm's cursor moves, colours


def lines(store: Store, job_id: str, node: str | None, poll_s: float = 1.0) -> Iterator[str]:
    """Yield whole prefixed lines of rank 0 (default), node `node`, or every node (`node == "all"`); "" after
    each poll that brought nothing."""
    job = store.get(job_id)
    records = logs.pick_nodes(job, None if node in (None, "", "all") else node, node == "all")
    offsets = {r.rank: 0 for r in records}
    splitter = logs.LineSplitter(records)
    session = None
    try:
        while True:
            job = store.get(job.id)
            final = job.state in states.FINAL
            if session is None and not final:
                from orchestrator.cluster.ssh import Session

                session = Session(job.ssh_config).__enter__()
            brought = False
            for record in records:
                chunk = _read(session, job, record, offsets[record.rank], final)
                offsets[record.rank] += len(chunk)
                brought = brought or bool(chunk)
                prefix = f"[{record.name}|{record.rank}] "
                yield from (prefix + as_shown(line) for line in splitter.split(record.rank, chunk, final))
            if final:
                return
            if not brought:
                yield ""  # a heartbeat: the server learns of a closed page when it writes
                time.sleep(poll_s)
    finally:
        if session is not None:
            session.__exit__(None, None, None)


def as_shown(line: bytes) -> str:
    """A log line as a terminal leaves it: what follows its last carriage return (progress bars redraw with \\r;
    a CR inside a server-sent event would also end the event's line), without terminal escape codes."""
    return _ESCAPES.sub("", line.decode("utf-8", "replace").rstrip("\r").rsplit("\r", 1)[-1])


def _read(session, job: JobRecord, record: NodeRecord, offset: int, final: bool) -> bytes:
    """New bytes of a rank's log: the local copy of an ended job, else the node's log through the scheduler."""
    local = logs.local_log(job, record)
    if final and local.exists():
        return local.read_bytes()[offset:]
    if session is None:
        from orchestrator.cluster.ssh import Session

        with Session(job.ssh_config) as once:
            return _read(once, job, record, offset, False)
    try:
        return schedulers.for_job(job).read_log(session, job, record, offset)
    except Exception:  # an unreachable node: nothing new this time
        return b""
