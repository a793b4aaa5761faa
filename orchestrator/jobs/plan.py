"""Plan a job: inventory + job spec -> rank order, master address/port, env and rendered scripts per node.

Pure: no I/O beyond reading templates, so `--dry-run` and unit tests see exactly what would run.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
from dataclasses import dataclass, field

from orchestrator.cluster.inventory import Inventory, Node
from orchestrator.errors import PlanError
from orchestrator.jobs.render import environment, masked_env
from orchestrator.jobs.worker import runs_worker

STOP_GRACE_S = 5
_PYTHON = re.compile(r"^(.*/)?python[0-9.]*$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class JobSpec:
    """What the user asked for."""

    job_id: str
    nodes: list[str] | None  # None = all nodes in the inventory
    command: list[str]  # argv after `--`, or ["-m", "orchestrator.train", CONFIG]
    nproc_per_node: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    project_name: str = "project"
    templates: str | None = None


@dataclass(frozen=True)
class NodePlan:
    """Everything one node needs to run its share of the job."""

    node: Node
    rank: int
    job_dir: str
    code_dir: str
    env: dict[str, str]
    launch_script: str
    env_script: str
    stop_script: str


@dataclass(frozen=True)
class JobPlan:
    job_id: str
    master_addr: str
    master_port: int
    nnodes: int
    nproc_per_node: int
    torchrun_args: list[str]
    nodes: list[NodePlan]

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node


def torchrun_args(command: list[str]) -> list[str]:
    """The user's command as torchrun arguments: `python x.py a` -> `x.py a`; `python -m m` -> `-m m`;
    a non-Python program -> `--no-python prog args`."""
    if not command:
        raise PlanError("no command given: use `orch launch ... -- python train.py ...` or a config YAML")
    head, rest = command[0], command[1:]
    if _PYTHON.match(head):
        if not rest:
            raise PlanError(f"{head!r} needs a script or -m module to run")
        if rest[0] == "-u":
            rest = rest[1:]
        if rest and rest[0] == "-c":
            raise PlanError("torchrun cannot run `python -c CODE`: put the code in a script and launch that")
        return rest
    if head.endswith(".py") or head == "-m":
        return list(command)
    return ["--no-python", *command]


def pick_nproc(nodes: list[Node], requested: int | None) -> int:
    """Processes per node: the flag, else every node's `gpus` (which must agree), else 1."""
    if requested is not None:
        if requested < 1:
            raise PlanError(f"--nproc-per-node must be >= 1, got {requested}")
        return requested
    counts = {node.gpus for node in nodes}
    if len(counts) > 1:
        detail = ", ".join(f"{n.name}={n.gpus}" for n in nodes)
        raise PlanError(f"nodes have different gpus ({detail}): pass --nproc-per-node")
    return counts.pop() or 1


def job_env(node: Node, spec: JobSpec, rank: int, nnodes: int, shared_fs: bool) -> dict[str, str]:
    """The environment a node's job runs with: node/cluster env, the user's --env, and orch's own tags."""
    for key in spec.env:
        if not _ENV_KEY.match(key):
            raise PlanError(f"--env {key!r}: not a valid environment variable name")
    env = {**node.env, **spec.env}
    env.update({
        "ORCH_JOB_ID": spec.job_id,
        "ORCH_NODE": node.name,
        "ORCH_NODE_RANK": str(rank),
        "ORCH_NNODES": str(nnodes),
        "ORCH_SHARED_FS": "1" if shared_fs else "0",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def plan_job(inventory: Inventory, spec: JobSpec, master_port: int, render: bool = True) -> JobPlan:
    """Plan `spec` on `inventory`; ranks follow the order of `spec.nodes`, the first node is the master. Without
    `render`, the scripts stay empty (a draft that checks the request and names the job folders)."""
    nodes = inventory.select(spec.nodes)
    if any(node.is_local for node in nodes) and len(nodes) > 1:
        raise PlanError("the local node 'localhost' cannot be combined with remote nodes: give it an ssh host")
    nproc = pick_nproc(nodes, spec.nproc_per_node)
    args = torchrun_args(spec.command)
    master = nodes[0]
    plans = []
    for rank, node in enumerate(nodes):
        job_dir = posixpath.join(node.workdir, "jobs", spec.job_id)
        env = job_env(node, spec, rank, len(nodes), inventory.shared_fs)
        if render:
            plans.append(render_node(spec, node, rank, len(nodes), nproc, args, env, job_dir,
                                     master_addr=shlex.quote(master.addr), master_port=str(master_port)))
        else:
            plans.append(NodePlan(node=node, rank=rank, job_dir=job_dir, env=env, launch_script="", env_script="",
                                  stop_script="", code_dir=posixpath.join(job_dir, "code")))
    return JobPlan(job_id=spec.job_id, master_addr=master.addr, master_port=master_port, nnodes=len(nodes),
                   nproc_per_node=nproc, torchrun_args=args, nodes=plans)


def render_node(spec: JobSpec, node: Node, rank: int, nnodes: int, nproc: int, args: list[str], env: dict[str, str],
                job_dir: str, master_addr: str, master_port: str, shared_dir: str | None = None,
                grace_s: float = STOP_GRACE_S) -> NodePlan:
    """Render one node's wrapper scripts (launch.sh, env.sh, stop.sh). `master_addr`/`master_port` are shell words
    (quoted values, or `"$MASTER_ADDR"` where the batch script derives them); `shared_dir` holds the code snapshot,
    the shipped worker and orch_site when every node's job folder shares one root, else the job folder does."""
    code_dir = posixpath.join(shared_dir or job_dir, "code")
    context = dict(
        job_id=spec.job_id, node=node, rank=rank, nnodes=nnodes, nproc_per_node=nproc,
        master_addr=master_addr, master_port=master_port, job_dir=job_dir, code_dir=code_dir, shared_dir=shared_dir,
        python=node.python, setup=node.setup, torchrun_args=args, env=env, worker=runs_worker(spec.command),
        output_root=posixpath.join(node.workdir, "outputs", spec.project_name),
        grace_ticks=int(grace_s * 5),
    )
    templates = environment(spec.templates)
    return NodePlan(
        node=node, rank=rank, job_dir=job_dir, code_dir=code_dir, env=env,
        launch_script=templates.get_template("launch.sh.j2").render(context),
        env_script=templates.get_template("env.sh.j2").render(context),
        stop_script=templates.get_template("stop.sh.j2").render(context),
    )


def describe(plan: JobPlan) -> str:
    """A human-readable dry run: every node's rendered scripts, secrets masked."""
    out = [f"job {plan.job_id}: {plan.nnodes} node(s) x {plan.nproc_per_node} process(es), "
           f"master {plan.master_addr}:{plan.master_port}"]
    for node_plan in plan.nodes:
        shown = masked_env(node_plan.env)
        out.append(f"\n===== {node_plan.node.name} (node_rank {node_plan.rank}) {node_plan.job_dir}/launch.sh")
        out.append(node_plan.launch_script.rstrip())
        out.append(f"----- {node_plan.job_dir}/env.sh")
        out.extend(f"{key}={value}" for key, value in shown.items())
    return "\n".join(out) + os.linesep
