"""The cluster inventory: a TOML file -> validated dataclasses, with errors that name file, line and key."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.cluster.toml_lines import key_lines
from orchestrator.errors import InventoryError, OrchError, located
from orchestrator.textio import read_config_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOCALHOST = "localhost"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Node:
    """One machine: how to reach it (SSH) and how it runs jobs. `host=None` means run locally without SSH."""

    name: str
    host: str | None
    addr: str
    gpus: int
    workdir: str
    python: str
    setup: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    spare: bool = False  # held back: only a restart uses it, in place of a failed (or excluded) node

    @property
    def is_local(self) -> bool:
        return self.host is None


@dataclass(frozen=True)
class Inventory:
    """A validated cluster: nodes in file order plus cluster-wide settings."""

    path: str
    nodes: tuple[Node, ...]
    master_port: int | None  # None = auto: a free port picked on the master at launch
    ssh_config: str | None
    shared_fs: bool
    env: dict[str, str]
    scheduler: str = "ssh"  # "ssh": orch starts every node itself; "slurm": sbatch/srun (orchestrator/jobs/schedulers/slurm.py)
    slurm: SlurmSettings | None = None
    defaults: Node | None = None  # the cluster-wide node settings (workdir, python, env): what Slurm nodes run with
    notify: str | None = None  # a shell command run on the controller, the job's JSON on stdin, at its events

    def node(self, name: str) -> Node:
        if self.scheduler == "slurm" and self.defaults is not None:  # any node Slurm knows, listed or not
            listed = [n for n in self.nodes if n.name == name]
            return listed[0] if listed else replace(self.defaults, name=name)
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes)
        raise InventoryError(f"{self.path}: unknown node {name!r} (known: {known})")

    def select(self, names: list[str] | None) -> list[Node]:
        """The nodes named, in the order given (= rank order); all nodes but the spares when `names` is None."""
        if names is None:
            return [node for node in self.nodes if not node.spare]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise InventoryError(f"node {name!r} is named twice in --nodes")
            seen.add(name)
        return [self.node(name) for name in names]


@dataclass(frozen=True)
class SlurmSettings:
    """`[cluster.slurm]`: the sbatch options every job of this cluster gets, and where the Slurm commands run."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = None
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    constraint: str | None = None
    exclusive: bool = False
    extra: tuple[str, ...] = ()
    login: str | None = None  # an SSH host where sbatch/squeue/scancel run; None = this machine


SCHEDULERS = ("ssh", "slurm")  # the scheduler registry: each name is a module in orchestrator/jobs/schedulers/
# key -> (expected types, human type name)
_STR = ((str,), "a string")
_INT = ((int,), "an integer")
_BOOL = ((bool,), "true or false")
_LIST = ((list,), "a list of strings")
_TABLE = ((dict,), "a table of NAME = \"value\"")
_CLUSTER_KEYS = {
    "workdir": _STR, "python": _STR, "setup": _LIST, "master_port": ((int, str), '"auto" or a port number'),
    "ssh_config": _STR, "shared_fs": _BOOL, "env": _TABLE, "user": _STR, "port": _INT, "identity_file": _STR,
    "gpus": _INT, "scheduler": _STR, "slurm": ((dict,), "a table: [cluster.slurm]"), "notify": _STR,
}
_SLURM_KEYS = {
    "partition": _STR, "account": _STR, "qos": _STR, "time": _STR, "gpus_per_node": _INT, "cpus_per_task": _INT,
    "mem": _STR, "constraint": _STR, "exclusive": _BOOL, "extra": _LIST, "login": _STR,
}
_SLURM_TIME = re.compile(r"^(\d+|\d+:\d{2}|\d+:\d{2}:\d{2}|\d+-\d+(:\d{2}(:\d{2})?)?|UNLIMITED|INFINITE)$")
_SLURM_MEM = re.compile(r"^\d+[KMGT]?$")
_NODE_KEYS = {
    "name": _STR, "host": _STR, "addr": _STR, "gpus": _INT, "workdir": _STR, "python": _STR, "setup": _LIST,
    "env": _TABLE, "user": _STR, "port": _INT, "identity_file": _STR, "spare": _BOOL,
}
_TOP_KEYS = {"cluster", "nodes"}


class _Checker:
    """Validates parsed TOML against the schema, raising errors located at the offending line."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.lines = key_lines(text)

    def fail(self, table: str, index: int, key: str | None, message: str) -> None:
        line = self.lines.get((table, index, key)) or self.lines.get((table, index, None))
        raise InventoryError(located(self.path, line, message))

    def table(self, data: dict, schema: dict, table: str, index: int, label: str) -> None:
        for key, value in data.items():
            if key not in schema:
                allowed = ", ".join(sorted(schema))
                self.fail(table, index, key, f"unknown key {key!r} in {label} (allowed: {allowed})")
            types, type_name = schema[key]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                self.fail(table, index, key, f"{label}.{key} must be {type_name}, got {value!r}")
            if key in ("setup", "extra") and not all(isinstance(item, str) for item in value):
                self.fail(table, index, key, f"{label}.{key} must be a list of strings")
            if key == "env":
                self.env(value, f"{table}.env", index, f"{label}.env")
            if key == "port" and not 0 < value < 65536:
                self.fail(table, index, key, f"{label}.port must be 1-65535, got {value}")
            if key in ("gpus", "gpus_per_node", "cpus_per_task") and value < (key != "gpus"):
                self.fail(table, index, key, f"{label}.{key} must be >= {int(key != 'gpus')}, got {value}")
            if key == "gpus" and value < 0:
                self.fail(table, index, key, f"{label}.gpus must be >= 0, got {value}")

    def env(self, env: dict, table: str, index: int, label: str) -> None:
        for name, value in env.items():
            if not ENV_KEY_RE.match(name):
                self.fail(table, index, name, f"{label}: {name!r} is not a valid environment variable name")
            if not isinstance(value, (str, int, float, bool)):
                self.fail(table, index, name, f"{label}.{name} must be a string or number, got {value!r}")

    def scheduler(self, cluster: dict) -> tuple[str, SlurmSettings | None]:
        """`scheduler` and, for Slurm, the validated `[cluster.slurm]` table."""
        name = cluster.get("scheduler", "ssh")
        if name not in SCHEDULERS:
            known = " or ".join(f'"{known}"' for known in SCHEDULERS)
            self.fail("cluster", 0, "scheduler", f"cluster.scheduler must be {known}, got {name!r}")
        raw = cluster.get("slurm", {})
        if name != "slurm":
            if raw:
                self.fail("cluster.slurm", 0, None, '[cluster.slurm] needs scheduler = "slurm" in [cluster]')
            return name, None
        self.table(raw, _SLURM_KEYS, "cluster.slurm", 0, "cluster.slurm")
        if "time" in raw and not _SLURM_TIME.match(raw["time"]):
            self.fail("cluster.slurm", 0, "time", f"cluster.slurm.time must be Slurm's MM, HH:MM:SS or D-HH:MM, "
                      f"got {raw['time']!r}")
        if "mem" in raw and not _SLURM_MEM.match(raw["mem"]):
            self.fail("cluster.slurm", 0, "mem", f"cluster.slurm.mem must be a size like 64G, got {raw['mem']!r}")
        for key in ("partition", "account", "qos", "constraint", "login"):
            if key in raw and (not raw[key] or raw[key].startswith("-") or any(c.isspace() for c in raw[key])):
                self.fail("cluster.slurm", 0, key, f"cluster.slurm.{key} {raw[key]!r} is not a valid value")
        for option in raw.get("extra", ()):
            if not option.startswith("--"):
                self.fail("cluster.slurm", 0, "extra", f"cluster.slurm.extra: {option!r} is not an sbatch option "
                          "(--name=value)")
        return name, SlurmSettings(**{**raw, "extra": tuple(raw.get("extra", ()))})

    def master_port(self, value: Any) -> int | None:
        if value is None or value == "auto":
            return None
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536:
            return value
        self.fail("cluster", 0, "master_port", f'cluster.master_port must be "auto" or 1-65535, got {value!r}')
        return None  # unreachable


def _env_strings(env: dict) -> dict[str, str]:
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}


def parse_inventory(text: str, path: str = "<inventory>") -> Inventory:
    """Parse and validate inventory TOML text."""
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise InventoryError(located(path, None, "malformed TOML: nested too deeply")) from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.search(r"\(at line (\d+), column \d+\)", message)
        line = int(match.group(1)) if match else None
        raise InventoryError(located(path, line, f"malformed TOML: {re.sub(r' ?[(]at line.*', '', message)}"))
    except ValueError as exc:  # a value tomllib cannot build (a 5000-digit integer)
        raise InventoryError(located(path, None, f"malformed TOML: {str(exc).split(';')[0]}")) from None
    check = _Checker(path, text)
    for key in data:
        if key not in _TOP_KEYS:
            check.fail("", 0, key, f"unknown top-level key {key!r} (allowed: [cluster], [[nodes]])")
    cluster = data.get("cluster", {})
    if not isinstance(cluster, dict):
        check.fail("", 0, "cluster", "[cluster] must be a table")
    check.table(cluster, _CLUSTER_KEYS, "cluster", 0, "cluster")
    scheduler, slurm = check.scheduler(cluster)
    raw_nodes = data.get("nodes")
    if not raw_nodes and scheduler == "slurm":
        raw_nodes = []
    elif not raw_nodes:
        raise InventoryError(located(path, None, "no [[nodes]] defined"))
    if not isinstance(raw_nodes, list):
        check.fail("", 0, "nodes", "nodes must be an array of tables: [[nodes]]")
    nodes: list[Node] = []
    names: set[str] = set()
    cluster_env = _env_strings(cluster.get("env", {}))
    for index, raw in enumerate(raw_nodes):
        label = f"nodes[{index}]"
        check.table(raw, _NODE_KEYS, "nodes", index, label)
        name = raw.get("name")
        if name is None:
            check.fail("nodes", index, None, f"{label} is missing the required key 'name'")
        if not NAME_RE.match(name):
            check.fail("nodes", index, "name", f"{label}.name {name!r}: use letters, digits, '.', '_' and '-'")
        if name in names:
            check.fail("nodes", index, "name", f"duplicate node name {name!r}")
        names.add(name)
        host = raw.get("host")
        if scheduler == "slurm":  # Slurm reaches its nodes: a [[nodes]] entry only overrides settings
            host = None
        elif host is None and name != LOCALHOST:
            check.fail("nodes", index, None, f"node {name!r} is missing the required key 'host'")
        if host is not None and (host.startswith("-") or any(c.isspace() for c in host)):
            check.fail("nodes", index, "host", f"node {name!r}: host {host!r} is not a valid ssh host")
        nodes.append(_build_node(raw, cluster, cluster_env, host, remote=scheduler == "slurm"))
    return Inventory(
        path=path,
        nodes=tuple(nodes),
        master_port=check.master_port(cluster.get("master_port", "auto")),
        ssh_config=os.path.expanduser(cluster["ssh_config"]) if "ssh_config" in cluster else None,
        shared_fs=cluster.get("shared_fs", scheduler == "slurm"),
        env=cluster_env,
        scheduler=scheduler,
        slurm=slurm,
        defaults=_build_node({"name": "*"}, cluster, cluster_env, None, remote=True) if slurm else None,
        notify=cluster.get("notify"),
    )


def _build_node(raw: dict, cluster: dict, cluster_env: dict[str, str], host: str | None,
                remote: bool = False) -> Node:
    """Merge a node's keys over the cluster defaults (`remote`: a Slurm node, reached by srun, not SSH)."""
    local = host is None and not remote

    def pick(key: str, default: Any = None) -> Any:
        return raw.get(key, cluster.get(key, default))

    python = pick("python", sys.executable if local else "python3")
    workdir = pick("workdir", default_local_workdir() if local else "orch")
    return Node(
        name=raw["name"],
        host=host,
        addr=raw.get("addr") or ("127.0.0.1" if local else host or raw["name"]),
        gpus=pick("gpus", 0),
        workdir=os.path.expanduser(workdir) if local else _home_relative(workdir),
        python=python,
        setup=tuple(pick("setup", ())),
        env={**cluster_env, **_env_strings(raw.get("env", {}))},
        user=pick("user"),
        port=pick("port"),
        identity_file=os.path.expanduser(pick("identity_file")) if pick("identity_file") else None,
        spare=raw.get("spare", False),
    )


def _home_relative(path: str) -> str:
    """`~/x` -> `x`: remote commands and rsync run from the login home, so a relative path means the same."""
    if path == "~":
        return "."
    return path[2:] if path.startswith("~/") else path


def default_local_workdir() -> str:
    """Where the embedded localhost node keeps job folders."""
    from orchestrator.paths import orch_home

    return str(orch_home() / "work")


EMBEDDED_DEFAULT = """\
# The embedded default: this machine only, no SSH.
[[nodes]]
name = "localhost"
"""


def find_inventory_path(explicit: str | None) -> str | None:
    """--cluster FILE, else $ORCH_CLUSTER, else ./cluster.toml; None means the embedded localhost default."""
    if explicit:
        return explicit
    if os.environ.get("ORCH_CLUSTER"):
        return os.environ["ORCH_CLUSTER"]
    return "cluster.toml" if Path("cluster.toml").is_file() else None


def load_inventory(explicit: str | None = None) -> Inventory:
    """Load the inventory chosen by `find_inventory_path`."""
    path = find_inventory_path(explicit)
    if path is None:
        return parse_inventory(EMBEDDED_DEFAULT, "<embedded default>")
    try:
        text = read_config_text(path)  # a BOM is fine; not UTF-8 or too large: one line
    except FileNotFoundError:
        raise InventoryError(f"{path}: inventory file not found") from None
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read inventory: {exc.strerror}") from None
    except OrchError as exc:
        raise InventoryError(str(exc)) from None
    return parse_inventory(text, path)
