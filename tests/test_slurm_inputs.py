"""Slurm inventories and launch plans without a cluster: one-line errors naming file, line and key; the sbatch
options, rank order and quoting of what `--dry-run` prints."""

from __future__ import annotations

import shlex
import sys

import pytest

from orchestrator.cluster.inventory import parse_inventory
from orchestrator.jobs.schedulers import slurm
from orchestrator.jobs.plan import JobSpec
from tests.orch_cli import orch
from tests.test_controller_inputs import assert_bad_inventory

GOOD = """\
[cluster]
scheduler = "slurm"
workdir = "/shared/orch"

[cluster.env]
NCCL_DEBUG = "WARN"

[cluster.slurm]
partition = "gpu"
account = "proj1"
qos = "normal"
time = "2-00:00:00"
gpus_per_node = 8
cpus_per_task = 32
mem = "500G"
constraint = "a100"
exclusive = true
extra = ["--comment=a b; $(touch /tmp/x)"]
"""

BAD = {
    "scheduler": (GOOD.replace('"slurm"', '"pbs"', 1), 2, 'cluster.scheduler must be "ssh" or "slurm"'),
    "unknown-key": (GOOD.replace('qos = "normal"', 'queue = "normal"'), 11, "unknown key 'queue'"),
    "bad-type": (GOOD.replace("gpus_per_node = 8", 'gpus_per_node = "8"'), 13, "gpus_per_node must be an integer"),
    "bad-time": (GOOD.replace('"2-00:00:00"', '"two days"'), 12, "cluster.slurm.time"),
    "bad-mem": (GOOD.replace('"500G"', '"lots"'), 15, "cluster.slurm.mem"),
    "bad-extra": (GOOD.replace('["--comment', '["comment'), 18, "not an sbatch option"),
    "bad-partition": (GOOD.replace('"gpu"', '"-x"'), 9, "cluster.slurm.partition"),
    "slurm-without-scheduler": (GOOD.replace('scheduler = "slurm"\n', ""), 7, 'needs scheduler = "slurm"'),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_slurm_inventory_names_file_line_and_key(case):
    assert_bad_inventory(*BAD[case])


def test_slurm_inventory_needs_no_nodes_and_maps_every_option_to_sbatch():
    inventory = parse_inventory(GOOD, "cluster.toml")
    assert inventory.scheduler == "slurm" and inventory.nodes == () and inventory.shared_fs
    spec = JobSpec(job_id="J1", nodes=["g3007", "g3006"], command=["python", "train.py"])
    plan, root, options = slurm.layout(inventory, spec, exclude=["g3009"])
    assert root == "/shared/orch/jobs/J1"
    assert [(p.node.name, p.rank, p.job_dir) for p in plan.nodes] == [
        ("g3007", 0, "/shared/orch/jobs/J1/rank-0"), ("g3006", 1, "/shared/orch/jobs/J1/rank-1")]
    assert plan.nproc_per_node == 8  # gpus_per_node
    assert {"--nodes=2", "--nodelist=g3007,g3006", "--exclude=g3009", "--partition=gpu", "--account=proj1",
            "--qos=normal", "--time=2-00:00:00", "--gpus-per-node=8", "--cpus-per-task=32", "--mem=500G",
            "--constraint=a100", "--exclusive", "--comment=a b; $(touch /tmp/x)"} <= set(options)
    batch, _ = slurm.scripts(spec, plan, root, options, None)
    assert "ORDER='g3007 g3006'" in batch  # rank order = the order given, whatever order Slurm lists
    assert shlex.quote("--comment=a b; $(touch /tmp/x)") in batch
    assert "srun --kill-on-bad-exit=1" in batch
    assert '--master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT"' in plan.nodes[1].launch_script


def test_a_count_lets_slurm_pick_and_rank_order_is_slurms():
    inventory = parse_inventory(GOOD, "cluster.toml")
    plan, root, options = slurm.layout(inventory, JobSpec(job_id="J2", nodes=["3"], command=["x.py"]))
    assert plan.nnodes == 3 and "--nodes=3" in options and not any(o.startswith("--nodelist") for o in options)
    batch, task = slurm.scripts(JobSpec(job_id="J2", nodes=["3"], command=["x.py"]), plan, root, options, None)
    assert "scontrol show hostnames" in batch and "ORCH_JOB_ID=J2" in task


def test_dry_run_prints_the_batch_script_and_every_rank_masked(tmp_path, orch_home):
    inventory = tmp_path / "cluster.toml"
    inventory.write_text(GOOD.replace('NCCL_DEBUG = "WARN"', 'NCCL_DEBUG = "WARN"\nHF_TOKEN = "hf_secret_1"'))
    (tmp_path / "train.py").write_text("print(1)\n")
    shown = orch("launch", "--cluster", str(inventory), "--nodes", "g1,g2", "--dry-run", "--", "python", "train.py",
                 cwd=tmp_path, env={"ORCH_HOME": str(orch_home)}, check=True).stdout
    assert "sbatch.sh" in shown and "slurm_task.sh" in shown and "--partition=gpu" in shown
    assert "rank-0/launch.sh" in shown and "rank-1/launch.sh" in shown
    assert "hf_secret_1" not in shown and "HF_TOKEN=***" in shown
    assert not (orch_home / "jobs.db").exists()  # touched nothing


@pytest.mark.parametrize("slurm_state,files,previous,expected", [
    ("PENDING", {}, "PENDING", "PENDING"),  # queued: no rank has started, however long it waits
    ("RUNNING", {}, "PENDING", "STARTING"),
    ("RUNNING", {"pgid": 7}, "STARTING", "RUNNING"),
    ("RUNNING", {"pgid": 7, "exit_code": 3}, "RUNNING", "FAILED"),  # the worker's own code, not srun's
    ("COMPLETING", {"pgid": 7, "exit_code": 0, "stopping": True}, "RUNNING", "RUNNING"),  # its sweep is running
    ("COMPLETED", {"pgid": 7, "exit_code": 0, "stopping": True}, "RUNNING", "SUCCEEDED"),
    ("TIMEOUT", {"pgid": 7, "stopped": True}, "RUNNING", "STOPPED"),
    ("CANCELLED", {}, "PENDING", "STOPPED"),  # cancelled while queued
    ("NODE_FAIL", {"pgid": 7}, "RUNNING", "LOST"),
])
def test_a_ranks_state_comes_from_its_files_and_slurms_state(slurm_state, files, previous, expected):
    from orchestrator.jobs.states import Probe

    assert slurm.node_state(Probe(reachable=True, dir_exists=True, **files), slurm_state, previous) == expected


def test_a_restart_excluding_a_node_asks_slurm_to_leave_it_out():
    from orchestrator.jobs.launch import LaunchRequest

    named = LaunchRequest(command=["x.py"], nodes=["g1", "g2", "g3"])
    slurm.relaunch(named, None, ("g2",))
    assert named.nodes == ["g1", "g3"] and named.exclude == ["g2"]
    counted = LaunchRequest(command=["x.py"], nodes=["2"], exclude=["g9"])
    slurm.relaunch(counted, None, ("g2",))
    assert counted.nodes == ["2"] and counted.exclude == ["g2", "g9"]  # the same count, anywhere but there


def test_a_model_whose_code_imports_what_the_shared_env_lacks_is_refused_before_sbatch(tmp_path, orch_home, tiny_model):
    """The launch preflight's model-code import check on Slurm: run with the shared env's Python in the submit's
    one round trip (here the login node is this machine), before any of the job's files or `sbatch`."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "modeling_custom.py").write_text("import orch_absent_package\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.jsonl").write_text('{"query": "q", "response": "r"}\n')
    (project / "job.yaml").write_text(f"model: {model}\nfinetuning: lora\ndata: {{train: [train.jsonl]}}\n")
    inventory = tmp_path / "cluster.toml"
    workdir = tmp_path / "shared"
    inventory.write_text(f'[cluster]\nscheduler = "slurm"\nworkdir = "{workdir}"\npython = "{sys.executable}"\n'
                         '[cluster.slurm]\npartition = "gpu"\n')
    proc = orch("launch", "--cluster", str(inventory), "--nodes", "1", "job.yaml", cwd=project,
                env={"ORCH_HOME": str(orch_home)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert (f"slurm: {model}: the model's own code (modeling_custom.py) imports orch_absent_package, not installed "
            "on this node: pip install orch_absent_package") in proc.stderr.splitlines()[-1], proc.stderr
    assert not (workdir / "jobs").exists()  # nothing of the job written, nothing submitted
