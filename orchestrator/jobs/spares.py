"""Spares: `spare = true` nodes in the inventory wait outside every job; a restart under `--max-restarts` puts a
healthy one in the place (the same rank) of each node that failed, so the world size, and the training, stay as
they were. Healthy = the launch preflight finds nothing hard on it (reachable, torch there, the same versions as
the job's master, a route to the master); spares are tried in inventory order. A manual `orch restart` does the
same, and also puts a spare in the place of each node it is told to `--exclude-node` (unless `--no-spares`). Only
nodes orch reaches over SSH serve as spares (a batch scheduler's inventory has no hosts: it picks its own nodes).
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


def substitute(session: Session, inventory: Inventory, job: JobRecord, exclude: tuple[str, ...] = ()
               ) -> dict[str, str]:
    """{node: the healthy spare to run in its place (same rank)} for each node of `job` that failed or is in
    `exclude` (failed ones served first when spares are short); empty on a scheduler that picks its own nodes."""
    names = [n.name for n in job.nodes]
    failed = [name for name in failed_nodes(job) if name not in exclude]
    wanted = failed + [name for name in names if name in exclude]
    candidates = [n for n in inventory.nodes if n.spare and n.host is not None and n.name not in names]
    if inventory.scheduler != "ssh" or not wanted or not candidates:
        return {}
    survivors = [inventory.node(name) for name in names if name not in wanted]
    master = survivors[0] if survivors else candidates[0]
    facts = checks.gather(session, [master, *[n for n in candidates if n is not master]], inventory.master_port)
    hard, _ = checks.problems(facts)
    healthy = [f.name for f in facts[1 if survivors else 0:]
               if not any(problem.startswith(f"{f.name}: ") for problem in hard)]
    chosen = dict(zip(wanted, healthy))
    return {name: chosen[name] for name in names if name in chosen}  # in rank order


def describe(replaced: dict[str, str]) -> str:
    """`node2 -> node3 (spare), chosen by the preflight` (comma-separated for several)."""
    return ", ".join(f"{old} -> {new} (spare)" for old, new in replaced.items()) + ", chosen by the preflight"
