"""Node locks: a job may not start on nodes that a running job already uses, unless forced."""

from __future__ import annotations

from orchestrator.cluster.ssh import Session
from orchestrator.errors import JobError
from orchestrator.jobs import states, watch
from orchestrator.jobs.store import Store


def busy_nodes(store: Store, node_names: list[str]) -> dict[str, str]:
    """{node: job id} for every wanted node held by a job that is still running (states checked live)."""
    holders: dict[str, str] = {}
    for job in store.active():
        overlap = {n.name for n in job.nodes} & set(node_names)
        if not overlap:
            continue
        with Session(job.ssh_config) as session:
            watch.refresh(store, session, job)
        if job.state not in states.FINAL:
            holders.update({name: job.id for name in overlap})
    return holders


def ensure_free(store: Store, node_names: list[str], force: bool) -> None:
    """Refuse to start on busy nodes unless `force`."""
    if force:
        return
    holders = busy_nodes(store, node_names)
    if holders:
        detail = ", ".join(f"{node} (job {job})" for node, job in sorted(holders.items()))
        raise JobError(f"nodes already in use: {detail}; stop that job first or pass --force")
