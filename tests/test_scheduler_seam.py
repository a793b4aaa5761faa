"""The scheduler seam holds: every registered scheduler implements the whole interface, nothing outside the
schedulers reaches Slurm's code or names it, the import graph has no cycle (imports inside functions count), the
rendered scripts are pinned by golden files, and Slurm's observation is a pure decision over canned output.

Regenerate the golden files after a deliberate template change with `ORCH_REGEN_GOLDEN=1 pytest
tests/test_scheduler_seam.py` and review the diff."""

from __future__ import annotations

import ast
import inspect
import os
import re
from pathlib import Path

import pytest

import orchestrator
from orchestrator.cluster.inventory import SCHEDULERS, parse_inventory
from orchestrator.jobs import schedulers, states
from orchestrator.jobs.schedulers.base import LaunchRequest, Scheduler
from orchestrator.jobs.store import JobRecord, NodeRecord

PACKAGE = Path(orchestrator.__file__).parent
GOLDEN = Path(__file__).parent / "golden"
SLURM_CODE = ("orchestrator.jobs.schedulers.slurm", "orchestrator.jobs.schedulers.slurm_doctor")


def interface() -> dict[str, object]:
    """The Protocol's members: constants (annotations) and functions (their signatures without `self`)."""
    members: dict[str, object] = {name: "constant" for name in Scheduler.__annotations__}
    for name, function in vars(Scheduler).items():
        if inspect.isfunction(function) and not name.startswith("_"):
            signature = inspect.signature(function)
            members[name] = signature.replace(parameters=list(signature.parameters.values())[1:])
    return members


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_registered_scheduler_implements_the_whole_interface_with_the_same_signatures(name):
    module = schedulers.get(name)
    assert module.NAME == name
    for member, expected in interface().items():
        assert hasattr(module, member), f"scheduler {name} lacks {member}"
        if expected == "constant":
            assert not callable(getattr(module, member)), member
        else:
            assert inspect.signature(getattr(module, member)) == expected, f"{name}.{member}"
    assert {"plan", "describe", "submit", "observe", "read_log", "stop", "dump_stacks", "relaunch", "doctor",
            "QUEUES"} <= set(interface())


def test_a_job_recorded_before_schedulers_were_named_counts_as_ssh():
    job = JobRecord(id="J", created=0.0, state=states.FAILED, command=["x"], master="m:1", nproc_per_node=1,
                    ssh_config=None, run_dir="/tmp/x", options={"request": {}})
    assert schedulers.for_job(job).NAME == "ssh" and job.to_json()["scheduler"]["name"] == "ssh"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """{module: orchestrator modules it imports}, from every import statement anywhere in its file (inside
    functions too); `from pkg import name` counts as importing `pkg.name` when that is a module."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base
                                                                                                    else []))
                for alias in node.names:
                    edges.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base)
        graph[name] = {e for e in edges if e in files and e != name}
    return graph


def test_the_import_graph_has_no_cycle_counting_imports_inside_functions():
    graph = import_graph()
    assert "orchestrator.jobs.schedulers.slurm" in graph and graph["orchestrator.jobs.launch"]
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_no_module_outside_the_schedulers_reaches_slurms_code_and_no_scheduler_imports_launch_or_watch():
    graph = import_graph()
    for module in graph:
        if not module.startswith("orchestrator.jobs.schedulers"):
            assert not reachable(graph, module) & set(SLURM_CODE), module
        else:
            assert not reachable(graph, module) & {"orchestrator.jobs.launch", "orchestrator.jobs.watch",
                                                   "orchestrator.jobs.supervise", "orchestrator.jobs.logs"}, module


def test_only_the_slurm_scheduler_and_the_inventory_parser_name_slurm():
    allowed = {PACKAGE / "cluster" / "inventory.py", *(PACKAGE / "jobs" / "schedulers").glob("slurm*.py")}
    named = [f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
             for path in sorted(PACKAGE.rglob("*.py")) if path not in allowed
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"slurm|squeue|sbatch", line, re.IGNORECASE)]
    assert named == []


# ----- golden files of the rendered scripts for one fixed plan

SSH_INVENTORY = """\
[cluster]
workdir = "/srv/orch"
python = "/opt/env/bin/python"
master_port = 29511
setup = ["source /opt/env/activate"]

[cluster.env]
NCCL_DEBUG = "WARN"

[[nodes]]
name = "a1"
host = "10.0.0.1"
gpus = 2

[[nodes]]
name = "a2"
host = "10.0.0.2"
gpus = 2
"""

SLURM_INVENTORY = """\
[cluster]
scheduler = "slurm"
workdir = "/shared/orch"
python = "/shared/env/bin/python"

[cluster.slurm]
partition = "gpu"
time = "1:00:00"
gpus_per_node = 2
"""


def rendered() -> dict[str, str]:
    """The scripts orch renders for one fixed request: the per-node wrapper and stop script of rank 1 (the same
    templates on every scheduler), and Slurm's batch and task scripts."""
    request = LaunchRequest(command=["python", "train.py", "--lr", "1e-4"], nodes=["a1", "a2"],
                            env={"RUN": "golden"}, project_dir=Path("/home/u/proj"))
    ssh_plan = schedulers.get("ssh").plan(parse_inventory(SSH_INVENTORY, "ssh.toml"), request, "20260101-000000-0000")
    slurm_planned = schedulers.get("slurm").plan(parse_inventory(SLURM_INVENTORY, "slurm.toml"), request,
                                                 "20260101-000000-0001")
    return {"launch.sh": ssh_plan.plan.nodes[1].launch_script, "stop.sh": ssh_plan.plan.nodes[1].stop_script,
            "sbatch.sh": slurm_planned.scripts["sbatch.sh"], "slurm_task.sh": slurm_planned.scripts["slurm_task.sh"]}


def test_rendered_scripts_match_their_golden_files(orch_home):
    scripts = rendered()
    if os.environ.get("ORCH_REGEN_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        for name, text in scripts.items():
            (GOLDEN / name).write_text(text)
        pytest.fail("golden files regenerated: review `git diff tests/golden`, then run without ORCH_REGEN_GOLDEN",
                    pytrace=False)
    for name, text in scripts.items():
        assert text == (GOLDEN / name).read_text(), (
            f"{name} differs from tests/golden/{name}: a template changed; if on purpose, regenerate with "
            "ORCH_REGEN_GOLDEN=1 and review the diff")


# ----- Slurm's observation from canned output (no slurmd)

def slurm_job(names: list[str], recorded: dict | None = None, rank_states: list[str] | None = None) -> JobRecord:
    from orchestrator.cluster.inventory import Node

    root = "/shared/orch/jobs/J"
    login = Node(name="slurm", host=None, addr="127.0.0.1", gpus=0, workdir="/shared/orch", python="python3")
    nodes = [NodeRecord(rank=r, name=name, node=login, job_dir=f"{root}/rank-{r}",
                        state=(rank_states or [states.PENDING] * len(names))[r]) for r, name in enumerate(names)]
    info = {"name": "slurm", "root": root, "job_id": "41", "state": "RUNNING", "submitted": True, **(recorded or {})}
    return JobRecord(id="J", created=0.0, state=states.RUNNING, command=["x"], master="m:1", nproc_per_node=1,
                     ssh_config=None, run_dir="/tmp/x", nodes=nodes, options={"scheduler": info})


def canned(squeue: str, ranks: list[str], extra: str = "") -> bytes:
    """What the probe's one round trip prints: squeue's line, the markers, then per rank its node and files."""
    from orchestrator.jobs.schedulers.slurm import RANK_MARK

    out = (squeue + "\n" if squeue else "") + extra + "master=node1:21234\n"
    return out.encode() + b"".join(RANK_MARK + rank.encode() for rank in ranks)


RUNNING_RANK = "node_name={node}\ndir=1\npgid=7\nalive=1\nstarted=1.0\nquiet=0\nlast=step 3\n"
PROGRESS = 'progress={"step": 3, "total": 10, "epoch": 0.3}\n'


@pytest.mark.parametrize("squeue,ranks,extra,expect", [
    # queued: Slurm's reason, nothing started, the job stays PENDING
    ("PENDING|Resources|", ["node_name=\ndir=0\n", "node_name=\ndir=0\n"], "",
     dict(states=["PENDING", "PENDING"], queued=True, state="PENDING", reason="Resources", ended_by=None)),
    # running, with rank 0's progress and the nodes Slurm chose
    ("RUNNING|None|node[3-4]", [RUNNING_RANK.format(node="node3") + PROGRESS, RUNNING_RANK.format(node="node4")],
     "", dict(states=["RUNNING", "RUNNING"], queued=False, nodes=["node3", "node4"], reason=None, ended_by=None,
              progress='{"step": 3, "total": 10, "epoch": 0.3}')),
    # one rank stopped alone (orch stopped it): STOPPED while the other runs and the job is RUNNING
    ("RUNNING|None|node[1-2]", [RUNNING_RANK.format(node="node1"), RUNNING_RANK.format(node="node2")
                                + "stopped=1\n"], "", dict(states=["RUNNING", "STOPPED"], ended_by=None)),
    # a rank's own exit code fails it, whatever srun did
    ("RUNNING|None|node[1-2]", [RUNNING_RANK.format(node="node1"), RUNNING_RANK.format(node="node2")
                                + "exit_code=3\n"], "", dict(states=["RUNNING", "FAILED"], ended_by=None)),
    # Slurm ended it: the time limit is the root cause
    ("TIMEOUT|TimeLimit|node1", [RUNNING_RANK.format(node="node1") + "stopped=1\n"], "",
     dict(states=["STOPPED"], ended_by="Slurm job 41 reached its time limit (TIMEOUT)")),
    # orch's own cancel is not a cause; someone else's is
    ("CANCELLED by 0|None|node1", [RUNNING_RANK.format(node="node1") + "stopped=1\n"], "orch_cancel=1\n",
     dict(states=["STOPPED"], state="CANCELLED", ended_by=None)),
    ("CANCELLED by 0|None|node1", [RUNNING_RANK.format(node="node1") + "stopped=1\n"], "",
     dict(states=["STOPPED"], ended_by="Slurm job 41 was cancelled outside orch (CANCELLED: scancel or an "
                                       "administrator)")),
    # squeue did not answer: nothing learnt
    ("slurm_load_jobs error: Socket timed out", [RUNNING_RANK.format(node="node1")], "", None),
])
def test_slurm_observation_from_canned_squeue_output_and_rank_files(squeue, ranks, extra, expect):
    from orchestrator.jobs.schedulers import slurm

    names = [f"rank{r}" for r in range(len(ranks))]
    job = slurm_job(names, rank_states=[states.RUNNING] * len(ranks) if squeue.startswith(("RUNNING", "TIMEOUT",
                                                                                             "CANCELLED")) else None)
    seen = slurm.observation(job, *slurm.parse_probe(canned(squeue, ranks, extra)))
    if expect is None:
        assert seen is None
        return
    assert [seen.ranks[r].state for r in range(len(ranks))] == expect["states"]
    assert seen.ended_by == expect["ended_by"] and seen.master == "node1:21234"
    for key in ("queued", "state", "reason"):
        if key in expect:
            assert getattr(seen, key) == expect[key], key
    if "nodes" in expect:
        assert [seen.ranks[r].node for r in range(len(ranks))] == expect["nodes"]
    if "progress" in expect:
        assert seen.ranks[0].probe.progress == expect["progress"]


def test_a_job_slurm_forgot_keeps_what_its_ranks_wrote():
    from orchestrator.jobs.schedulers import slurm

    job = slurm_job(["node1"], recorded={"state": "RUNNING"}, rank_states=[states.RUNNING])
    output = canned("", [RUNNING_RANK.format(node="node1") + "exit_code=0\nended=2.0\n"],
                    "slurm_load_jobs error: Invalid job id specified\n")
    seen = slurm.observation(job, *slurm.parse_probe(output))
    assert seen.ranks[0].state == states.SUCCEEDED and seen.state is None
    assert "no longer knows it" in seen.ended_by  # recorded RUNNING, now gone: the cause if no rank says more
