"""`orch doctor` on a Slurm cluster, where compute nodes are Slurm's to run things on, not SSH's.

Without an allocation orch can check two things, in one round trip to the login node (or on this machine): that the
cluster's Python (on the shared filesystem, so what every rank runs) has torch and the ML stack, and what `sinfo`
says of the partition's nodes. `--smoke` then runs the all_reduce through Slurm on the usable nodes.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass

from orchestrator.cluster import doctor
from orchestrator.cluster.inventory import Inventory, Node
from orchestrator.cluster.ssh import Session
from orchestrator.errors import RemoteError
from orchestrator.jobs.schedulers.base import DoctorTable

# node states a job can start on now or soon (a suffix such as `*`, not responding, makes a node unusable)
USABLE = {"idle", "mixed", "allocated", "completing", "planned"}
SINFO_FIELDS = "%N|%T|%c|%G|%E"


@dataclass(frozen=True)
class SlurmNode:
    """One node as `sinfo -N` lists it in the partition."""

    name: str
    state: str
    cpus: str
    gres: str
    reason: str

    @property
    def usable(self) -> bool:
        return self.state in USABLE


def sinfo_command(partition: str | None) -> str:
    """`sinfo`, one line per node of the partition (the default partition when none is set)."""
    where = f" -p {shlex.quote(partition)}" if partition else ""
    return f"sinfo -h -N{where} -o {shlex.quote(SINFO_FIELDS)}"


def parse_sinfo(text: str) -> list[SlurmNode]:
    """`sinfo_command`'s lines; a node listed twice (in two partitions) once."""
    nodes: dict[str, SlurmNode] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) == 5 and fields[0]:
            nodes.setdefault(fields[0], SlurmNode(*fields[:4], "" if fields[4] == "none" else fields[4]))
    return list(nodes.values())


def gather(session: Session, login: Node, partition: str | None) -> tuple[doctor.NodeFacts, list[SlurmNode], str]:
    """(the login node's facts, the partition's nodes, sinfo's error if it failed)."""
    facts = doctor.check_node(session, login, login, deep=True)
    try:
        result = session.run(login, sinfo_command(partition), timeout=30, check=False)
    except RemoteError as exc:
        return facts, [], str(exc)
    error = result.error_text.splitlines()[-1] if result.returncode != 0 and result.error_text else ""
    return facts, parse_sinfo(result.text), error or ("" if result.returncode == 0 else f"exit {result.returncode}")


def problems(inventory: Inventory, facts: doctor.NodeFacts, nodes: list[SlurmNode], sinfo_error: str,
             wanted: list[str] | None) -> tuple[list[str], list[str]]:
    """(hard, soft): the login node's Python and torch; sinfo answering; the partition having usable nodes; the
    nodes asked for (`--nodes`, or the inventory's `[[nodes]]`) being in it and usable."""
    hard, soft = doctor.problems([facts])
    partition = inventory.slurm.partition or "the default partition"
    if sinfo_error:
        return hard + [f"sinfo failed on {facts.name}: {sinfo_error}"], soft
    listed = {n.name: n for n in nodes}
    for name in wanted or []:
        if name not in listed:
            hard.append(f"{name}: not a node of {partition}")
        elif not listed[name].usable:
            hard.append(f"{name}: {listed[name].state}{f' ({listed[name].reason})' if listed[name].reason else ''}")
    if not any(n.usable for n in nodes):
        hard.append(f"{partition}: no node a job can run on")
    soft += [f"{n.name}: {n.state}{f' ({n.reason})' if n.reason else ''}" for n in nodes
             if not n.usable and n.name not in (wanted or [])]
    return hard, soft


def as_json(facts: doctor.NodeFacts, nodes: list[SlurmNode]) -> dict:
    """The `--json` fields that differ from the SSH doctor's: the login node and Slurm's nodes."""
    return {"login": {k: v for k, v in vars(facts).items() if k not in ("cache_entry", "then")},
            "slurm_nodes": [{**asdict(n), "usable": n.usable} for n in nodes]}


def table(nodes: list[SlurmNode]) -> DoctorTable:
    """The partition's nodes as sinfo lists them; unusable ones in red."""
    return DoctorTable(title="slurm nodes", columns=("node", "state", "cpus", "gres", "reason"), rows=[
        (n.name, n.state if n.usable else f"[red]{n.state}[/red]", n.cpus, "-" if n.gres in ("", "(null)") else n.gres,
         n.reason or "-") for n in nodes])
