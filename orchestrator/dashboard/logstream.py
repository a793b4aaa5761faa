"""The live log pane: a job's log lines as server-sent events, `[node|rank]`-prefixed, until the job has ended
and every log is drained (read through the same probe `orch logs --follow` uses; a job that ended reads the
local copy)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

from orchestrator.jobs import logs, states, watch
from orchestrator.jobs.store import Store


def lines(store: Store, job_id: str, node: str | None, poll_s: float = 1.0) -> Iterator[str]:
    """Yield whole prefixed lines of rank 0 (default), node `node`, or every node (`node == "all"`); "" after
    each poll that brought nothing."""
    job = store.get(job_id)
    records = logs.pick_nodes(job, None if node in (None, "", "all") else node, node == "all")
    offsets = {r.rank: 0 for r in records}
    pending = {r.rank: b"" for r in records}
    prefix = {r.rank: f"[{r.name}|{r.rank}] " for r in records}

    def emit(rank: int, chunk: bytes, final: bool) -> Iterator[str]:
        offsets[rank] += len(chunk)
        parts = (pending[rank] + chunk).split(b"\n")
        pending[rank] = b"" if final else parts.pop()
        for part in parts:
            if part or not final:
                yield prefix[rank] + part.decode("utf-8", "replace").rstrip("\r")

    session = None
    try:
        while True:
            if job.state in states.FINAL:
                for record in records:
                    path = logs.local_log(job, record)
                    data = Path(path).read_bytes()[offsets[record.rank]:] if path.exists() else b""
                    yield from emit(record.rank, data, True)
                return
            if session is None:
                from orchestrator.cluster.ssh import Session

                session = Session(job.ssh_config).__enter__()
            chunks = watch.refresh(store, session, job, dict(offsets))
            for record in records:
                yield from emit(record.rank, chunks.get(record.rank, b""), False)
            if not any(chunks.values()):
                yield ""  # a heartbeat: the server learns of a closed page when it writes
                time.sleep(poll_s)
    finally:
        if session is not None:
            session.__exit__(None, None, None)
