"""Preflight checks on every node at once: reachability, Python and library versions, GPUs, disk, clock, routes.

One round trip per node gathers the facts (`facts_command`); comparing them is pure (`problems`), so `orch doctor`
prints a table and `orch launch` refuses on a hard mismatch before anything starts.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass, field

from orchestrator.cluster.inventory import Node
from orchestrator.cluster.ssh import Session, fan_out
from orchestrator.errors import RemoteError
from orchestrator.train.requirements import SUPPORTED

# Versions from package metadata (fast: nothing imported); with `deep`, torch is imported for CUDA/NCCL/GPUs.
_VERSIONS_PY = """
import json, sys
from importlib import metadata
out = {"python": sys.version.split()[0]}
for name in PACKAGES:
    try:
        out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        out[name] = None
if DEEP and out["torch"]:
    import torch
    out["cuda"] = torch.version.cuda
    out["cuda_devices"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
    try:
        out["nccl"] = ".".join(map(str, torch.cuda.nccl.version())) if out["cuda_devices"] else None
    except Exception:
        out["nccl"] = None
if PORT:
    import socket
    s = socket.socket()
    try:
        s.bind(("", PORT)); out["port_free"] = True
    except OSError:
        out["port_free"] = False
print("py=" + json.dumps(out))
"""
PACKAGES = (*SUPPORTED, "orchestrator")  # what the built-in worker may need, and orch itself
HARD_KEYS = ("python", "torch")  # a mismatch here makes a job hang or crash: refuse to launch
SOFT_KEYS = ("transformers", "peft", "deepspeed", "orchestrator", "cuda", "nccl")


@dataclass
class NodeFacts:
    """What one node reported."""

    name: str
    reachable: bool
    error: str = ""
    latency_ms: float = 0.0
    versions: dict = field(default_factory=dict)
    clock_skew_s: float | None = None
    disk_free_gb: float | None = None
    route: str = ""
    gpus: int | None = None
    gpu_busy: int | None = None
    missing: list[str] = field(default_factory=list)  # paths the job names that this node lacks


def facts_command(node: Node, master_addr: str, port: int | None, deep: bool, paths: tuple[str, ...] = ()) -> str:
    """The shell that prints key=value facts on a node; `paths` must exist there (one `missing=` line each)."""
    setup = "".join(f"{line}; " for line in node.setup)
    py = _VERSIONS_PY.replace("PACKAGES", repr(PACKAGES)).replace("DEEP", str(deep)).replace("PORT", str(port or 0))
    workdir = shlex.quote(node.workdir)
    return (
        f"{setup}"
        f"d={workdir}; while [ ! -d \"$d\" ]; do d=$(dirname \"$d\"); done; "
        "df -Pk \"$d\" | awk 'NR==2 {print \"disk_kb=\" $4}'; "
        f"echo route=$(ip route get {shlex.quote(master_addr)} 2>/dev/null | head -n 1); "
        "if command -v nvidia-smi >/dev/null 2>&1; then "
        "echo gpus=$(nvidia-smi -L 2>/dev/null | grep -c GPU); "
        "echo gpu_busy=$(nvidia-smi --query-compute-apps=pid --format=csv,noheader 2>/dev/null | grep -c .); fi; "
        + "".join(f"[ -e {shlex.quote(p)} ] || echo missing={shlex.quote(p)}; " for p in paths)
        + f"{shlex.quote(node.python)} -c {shlex.quote(py)} 2>&1 | tail -n 1"
    )


def parse_facts(name: str, text: str) -> NodeFacts:
    facts = NodeFacts(name=name, reachable=True)
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "disk_kb" and value.isdigit():
            facts.disk_free_gb = int(value) / 1024 / 1024
        elif key == "route":
            words = value.split()
            facts.route = words[words.index("dev") + 1] if "dev" in words else ""
        elif key in ("gpus", "gpu_busy") and value.isdigit():
            setattr(facts, key, int(value))
        elif key == "missing":
            facts.missing.append(value)
        elif key == "py":
            facts.versions = json.loads(value)
    if not facts.versions:
        facts.error = f"python not usable: {text.splitlines()[-1] if text.strip() else 'no output'}"
    return facts


def gather(session: Session, nodes: list[Node], port: int | None = None, deep: bool = False,
           paths: tuple[str, ...] = ()) -> list[NodeFacts]:
    """Facts from every node at once (and which of `paths` each lacks); an unreachable node is reported, not
    raised."""
    master = nodes[0]

    def one(node: Node) -> NodeFacts:
        try:
            session.connect(node)
            sent = time.time()  # a bare round trip: latency, and the clock read half-way through it
            clock = float(session.run(node, "date +%s.%N", timeout=20).text.strip())
            received = time.time()
            command = facts_command(node, master.addr, port if node is master else None, deep, paths)
            result = session.run(node, command, timeout=120, check=False)
            facts = parse_facts(node.name, result.text)
            facts.latency_ms = (received - sent) * 1000
            facts.clock_skew_s = clock - (sent + received) / 2
            return facts
        except RemoteError as exc:
            return NodeFacts(name=node.name, reachable=False, error=str(exc))

    found = fan_out(nodes, one)
    return [found[node.name] for node in nodes]


def problems(facts: list[NodeFacts], max_skew_s: float = 2.0, min_disk_gb: float = 1.0,
             named_by: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """(hard, soft) problems: hard ones make `orch launch` refuse; soft ones are warnings. `named_by` says which
    config key named each checked path, for the message."""
    hard, soft = [], []
    reference = next((f for f in facts if f.reachable and f.versions), None)
    for f in facts:
        if not f.reachable or f.error:
            hard.append(f"{f.name}: {f.error or 'unreachable'}")
            continue
        if not f.versions.get("torch"):
            hard.append(f"{f.name}: torch is not installed for {f.versions.get('python')} on this node")
        if reference is not None and f is not reference:
            for key in HARD_KEYS + SOFT_KEYS:
                if key in f.versions and f.versions.get(key) != reference.versions.get(key):
                    (hard if key in HARD_KEYS else soft).append(
                        f"{f.name}: {key} {f.versions.get(key)} differs from {reference.name}'s "
                        f"{reference.versions.get(key)}")
        for path in f.missing:
            key = (named_by or {}).get(path)
            hard.append(f"{f.name}: {path}{f' ({key})' if key else ''} does not exist there; orch sends only the "
                        "project folder: stage it on every node or on the shared filesystem")
        if f.versions.get("port_free") is False:
            hard.append(f"{f.name}: master port is already in use")
        if f.clock_skew_s is not None and abs(f.clock_skew_s) > max_skew_s:
            soft.append(f"{f.name}: clock differs by {f.clock_skew_s:+.1f} s")
        if f.disk_free_gb is not None and f.disk_free_gb < min_disk_gb:
            soft.append(f"{f.name}: only {f.disk_free_gb:.1f} GB free in the workdir")
        if f.gpu_busy:
            soft.append(f"{f.name}: {f.gpu_busy} process(es) already hold GPUs")
    return hard, soft
