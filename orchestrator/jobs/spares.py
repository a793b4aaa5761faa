"""Spares: `spare = true` nodes in the inventory wait outside every job; a restart under `--max-restarts` puts a
healthy one in the place (the same rank) of each node that failed, so the world size, and the training, stay as
they were. Healthy = the launch preflight finds nothing hard on it (reachable, torch there, the same versions as
the job's master, a route to the master); spares are tried in inventory order. Only nodes orch reaches over SSH
serve as spares (a batch scheduler's inventory has no hosts: it picks its own nodes).
"""

from __future__ import annotations

from orchestrator.cluster import doctor as checks
from orchestrator.cluster.inventory import Inventory
from orchestrator.cluster.ssh import Session
from orchestrator.jobs import states
from orchestrator.jobs.store import JobRecord


def failed_nodes(job: JobRecord) -> list[str]:
    """The nodes a spare should replace: the one the root cause names and every node lost (not those fail-fast
    stopped)."""
    cause = job.root_cause or ""
    return [n.name for n in job.nodes if n.state == states.LOST or cause.startswith(f"node {n.name} ")]


def substitute(session: Session, inventory: Inventory, job: JobRecord, names: list[str]) -> dict[str, str]:
    """Put a healthy spare in each failed node's place in `names` (edited in place); returns {failed: spare}."""
    failed = [name for name in failed_nodes(job) if name in names]
    candidates = [n for n in inventory.nodes if n.spare and n.host is not None and n.name not in names]
    if not failed or not candidates:
        return {}
    survivors = [inventory.node(name) for name in names if name not in failed]
    master = survivors[0] if survivors else candidates[0]
    facts = checks.gather(session, [master, *[n for n in candidates if n is not master]], inventory.master_port)
    hard, _ = checks.problems(facts)
    healthy = [f.name for f in facts[1 if survivors else 0:]
               if not any(problem.startswith(f"{f.name}: ") for problem in hard)]
    replaced = dict(zip(failed, healthy))
    names[:] = [replaced.get(name, name) for name in names]
    return replaced


def describe(replaced: dict[str, str]) -> str:
    """`node2 -> node3 (spare), chosen by the preflight` (comma-separated for several)."""
    return ", ".join(f"{old} -> {new} (spare)" for old, new in replaced.items()) + ", chosen by the preflight"
