"""Preflight checks on every node at once: reachability, Python and library versions, GPUs, disk, clock, routes.

One round trip per node gathers the facts (`facts_command`), the master's port (checked or picked) included;
comparing them is pure (`problems`), so `orch doctor` prints a table and `orch launch` refuses on a hard mismatch
before anything starts. A node's library versions are cached on the controller (`$ORCH_HOME/facts/`) with the
modification times of its interpreter and `sys.path` folders: while those are unchanged (pip, conda and apt all
change a folder's entries when they install), a launch runs no Python there for the check. `orch doctor` always
reads them afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.cluster.inventory import Node
from orchestrator.cluster.ssh import Session, fan_out
from orchestrator.errors import RemoteError
from orchestrator.train.requirements import SUPPORTED

# Versions from package metadata (fast: nothing imported); with `deep`, torch is imported for CUDA/NCCL/GPUs. Also
# what the cache is keyed by: `$PYTHONPATH` and the whole-second mtimes of the interpreter and its sys.path folders,
# spelled exactly as the `stat` line of `facts_command` prints them (none when a folder changed in the last seconds).
_VERSIONS_PY = """
import json, os, sys, time
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
dirs = [os.path.realpath(sys.executable)] + [p for p in dict.fromkeys(sys.path) if p and os.path.isdir(p)]
times = [int(os.stat(p).st_mtime) for p in dirs]
recent = max(times) >= int(time.time()) - 2  # a change within these seconds could share its second: no cache
stamp = None if recent else os.environ.get("PYTHONPATH", "") + "|" + "\\n".join(map(str, times))
print("py=" + json.dumps({"versions": out, "dirs": dirs, "stamp": stamp}))
"""
# the packages a model folder's own code imports that the node lacks: transformers' own reading of each code file
# (`get_imports`, what `check_imports` checks when the model loads), each looked up without importing it; exit
# IMPORTS_MISSING when one lacks something
IMPORTS_MISSING = 97
_IMPORTS_PY = """import glob, importlib.util, json, os, sys
from transformers.dynamic_module_utils import get_imports
lacking = False
for folder in sys.argv[1:]:
    missing = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.py"))):
        for name in get_imports(path):
            if importlib.util.find_spec(name) is None:
                missing.setdefault(name, []).append(os.path.basename(path))
    print("imports=" + json.dumps([folder, missing]))
    lacking = lacking or bool(missing)
sys.exit(MISSING if lacking else 0)
""".replace("MISSING", str(IMPORTS_MISSING))
# the master's port, with `python -S` (no site-packages: a few ms): is PORT free, or (0) pick one that is
_PORT_PY = """import socket
s = socket.socket()
try:
    s.bind(("", PORT))
    print("port=%d" % s.getsockname()[1])
except OSError:
    print("port=busy")
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
    missing_imports: dict = field(default_factory=dict)  # model folder -> {package its code imports: [files]}
    port: int | None = None  # the master's port: the one asked for, free; or one picked free
    port_busy: bool = False  # the master port asked for is taken
    cached: bool = False  # versions came from the controller's cache (the node's Python folders are unchanged)
    cache_entry: dict = field(default_factory=dict, repr=False)  # what a fresh read stores: dirs, stamp
    then: tuple[int, str] | None = field(default=None, repr=False)  # `check_node(then=...)`: exit status, last lines


def facts_command(node: Node, master_addr: str, port: int | None, deep: bool, paths: tuple[str, ...] = (),
                  cached: dict | None = None, pick_port: bool = False, code_dirs: tuple[str, ...] = ()) -> str:
    """The shell that prints key=value facts on a node; `paths` must exist there (one `missing=` line each). With
    `cached` (an earlier read's dirs and stamp), Python runs only if the node's Python folders changed since. On
    the master, `port` is checked (or, with `pick_port`, a free one picked). `code_dirs`: model folders whose own
    code's imports are checked (one `imports=` line each that has `.py` files; never cached)."""
    setup = "".join(f"{line}; " for line in node.setup)
    python = shlex.quote(node.python)
    versions = f"{python} -c {shlex.quote(_VERSIONS_PY.replace('PACKAGES', repr(PACKAGES)).replace('DEEP', str(deep)))}"
    versions += " 2>&1 | tail -n 1"
    if cached:  # every process counts: a launch runs this on every node at once
        dirs = " ".join(shlex.quote(d) for d in cached["dirs"])
        stamp = f"s=\"$PYTHONPATH|$(stat -L -c %Y {dirs} 2>/dev/null)\"; "
        versions = f"{stamp}if [ \"$s\" = {shlex.quote(cached['stamp'])} ]; then echo cached=1; else {versions}; fi"
    if port or pick_port:
        versions += f"; {python} -S -c {shlex.quote(_PORT_PY.replace('PORT', str(port or 0)))} 2>/dev/null"
    if code_dirs:
        versions += f"; {imports_command(python, code_dirs)}"
    route = f"echo route=$(ip route get {shlex.quote(master_addr)} 2>/dev/null | head -n 1); " if deep else ""
    return (
        "echo clock=${EPOCHREALTIME:-$(date +%s.%N)}; " + setup
        + f"d={shlex.quote(node.workdir)}; while [ ! -d \"$d\" ]; do d=$(dirname \"$d\"); done; "
        "stat -f -c 'disk=%a %S' \"$d\"; " + route
        + "if command -v nvidia-smi >/dev/null 2>&1; then "
        "echo gpus=$(nvidia-smi -L 2>/dev/null | grep -c GPU); "
        "echo gpu_busy=$(nvidia-smi --query-compute-apps=pid --format=csv,noheader 2>/dev/null | grep -c .); fi; "
        + "".join(f"[ -e {shlex.quote(p)} ] || echo missing={shlex.quote(p)}; " for p in paths)
        + versions
    )


def imports_command(python: str, code_dirs: tuple[str, ...]) -> str:
    """The shell printing one `imports=` line per model folder in `code_dirs` (nothing when none has `.py` files);
    its status is IMPORTS_MISSING when the `python` (quoted) env lacks a package that code imports."""
    dirs = " ".join(shlex.quote(d) for d in code_dirs)
    return (f"if ls {' '.join(shlex.quote(d + '/') + '*.py' for d in code_dirs)} >/dev/null 2>&1; then "
            f"{python} -c {shlex.quote(_IMPORTS_PY)} {dirs} 2>/dev/null; fi")


def imports_gate(node: Node, code_dirs: tuple[str, ...]) -> str:
    """A shell prefix (the node's setup lines, its Python) that prints `imports_command`'s lines and exits
    IMPORTS_MISSING where that finds a package missing, else goes on (`<gate>; the rest`)."""
    setup = "".join(f"{line}; " for line in node.setup)
    return (f"( {setup}{imports_command(shlex.quote(node.python), code_dirs)} ); "
            f"[ $? -ne {IMPORTS_MISSING} ] || exit {IMPORTS_MISSING}; ")


def parse_facts(name: str, text: str, cached: dict | None = None) -> NodeFacts:
    """NodeFacts from `facts_command`'s output (`cached`: the cache entry it was given)."""
    facts = NodeFacts(name=name, reachable=True)
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "disk" and value.replace(" ", "").isdigit():
            blocks, size = value.split()
            facts.disk_free_gb = int(blocks) * int(size) / 1024 ** 3
        elif key == "route":
            words = value.split()
            facts.route = words[words.index("dev") + 1] if "dev" in words else ""
        elif key in ("gpus", "gpu_busy") and value.isdigit():
            setattr(facts, key, int(value))
        elif key == "missing":
            facts.missing.append(value)
        elif key == "imports":
            folder, missing = json.loads(value)
            if missing:
                facts.missing_imports[folder] = missing
        elif key == "clock":
            try:
                facts.clock_skew_s = float(value.replace(",", "."))  # the node's clock; made a skew by the caller
            except ValueError:
                pass
        elif key == "port":
            facts.port, facts.port_busy = (int(value), False) if value.isdigit() else (None, True)
        elif key == "cached" and cached:
            facts.versions, facts.cached = dict(cached["versions"]), True
        elif key == "then" and value.isdigit():
            facts.then = (int(value), facts.then[1] if facts.then else "")
        elif key == "then_err" and value:
            code, lines = facts.then or (0, "")
            facts.then = (code, f"{lines}\n{value}".strip())
        elif key == "py":
            read = json.loads(value)
            facts.versions = read["versions"]
            facts.cache_entry = {"dirs": read["dirs"], "stamp": read["stamp"], "versions": read["versions"]}
    if not facts.versions:
        ours = ("clock=", "disk=", "route=", "gpus=", "gpu_busy=", "missing=", "port=", "then", "cached=", "imports=")
        last = [line for line in text.splitlines() if line.strip() and not line.startswith(ours)]
        facts.error = f"python not usable: {last[-1] if last and last[-1].strip() else 'no output'}"
    return facts


def _cache_file(node: Node) -> Path:
    """Where a node's versions are cached: one file per host, login, Python and setup lines."""
    from orchestrator.paths import orch_home

    key = json.dumps([node.host, node.user, node.port, node.python, list(node.setup)])
    return orch_home() / "facts" / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".json")


def read_cache(node: Node) -> dict | None:
    """The node's cached versions with the dirs and stamp they are valid for, if any."""
    try:
        entry = json.loads(_cache_file(node).read_text())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and {"dirs", "stamp", "versions"} <= entry.keys() else None


def write_cache(node: Node, entry: dict) -> None:
    """Store a fresh read (written whole, then renamed into place)."""
    path = _cache_file(node)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(entry))
    partial.replace(path)


def gather(session: Session, nodes: list[Node], port: int | None = None, deep: bool = False,
           paths: tuple[str, ...] = (), pick_port: bool = False) -> list[NodeFacts]:
    """Facts from every node at once (and which of `paths` each lacks); an unreachable node is reported, not
    raised. `deep` (`orch doctor`): also CUDA/NCCL from torch, a bare round trip for the latency, and never the
    cache. `pick_port`: the master picks a free port (`NodeFacts.port`)."""
    found = fan_out(nodes, lambda node: check_node(session, node, nodes[0], port, deep, paths, pick_port))
    return [found[node.name] for node in nodes]


def check_node(session: Session, node: Node, master: Node, port: int | None = None, deep: bool = False,
               paths: tuple[str, ...] = (), pick_port: bool = False, then: str | None = None,
               code_dirs: tuple[str, ...] = ()) -> NodeFacts:
    """One node's facts (see `gather`); `port` and `pick_port` apply on the master only. `then`: a shell command
    run right after, in the same round trip (a launch stages its code there); its exit status and last lines land
    in `NodeFacts.then`."""
    try:
        session.connect(node)
        latency = None
        if deep:
            sent = time.time()
            session.run(node, "true", timeout=20)
            latency = time.time() - sent
        cached = None if deep else read_cache(node)
        is_master = node is master
        command = facts_command(node, master.addr, port if is_master else None, deep, paths, cached,
                                pick_port and is_master, code_dirs)
        if then:
            command += f"; t=$( {then} 2>&1 ); echo \"then=$?\"; printf '%s\\n' \"$t\" | tail -n 2 | sed 's/^/then_err=/'"
        sent = time.time()
        result = session.run(node, command, timeout=120, check=False)
        facts = parse_facts(node.name, result.text, cached)
        # the clock is read first thing: at about sent + half the bare round trip (or of this one)
        half = (latency if latency is not None else time.time() - sent) / 2
        facts.latency_ms = (latency if latency is not None else 2 * half) * 1000
        if facts.clock_skew_s is not None:
            facts.clock_skew_s -= sent + half
        if facts.cache_entry.get("stamp"):
            write_cache(node, facts.cache_entry)
        return facts
    except RemoteError as exc:
        return NodeFacts(name=node.name, reachable=False, error=str(exc))


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
        if f.port_busy:
            hard.append(f"{f.name}: master port is already in use")
        if f.clock_skew_s is not None and abs(f.clock_skew_s) > max_skew_s:
            soft.append(f"{f.name}: clock differs by {f.clock_skew_s:+.1f} s")
        if f.disk_free_gb is not None and f.disk_free_gb < min_disk_gb:
            soft.append(f"{f.name}: only {f.disk_free_gb:.1f} GB free in the workdir")
        if f.gpu_busy:
            soft.append(f"{f.name}: {f.gpu_busy} process(es) already hold GPUs")
    return hard, soft
