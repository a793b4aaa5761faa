"""Bad inventories and arguments: one-line error naming file, line and key; exit 2; nothing started."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from orchestrator.cluster.inventory import parse_inventory
from orchestrator.errors import InventoryError, PlanError
from orchestrator.jobs.plan import JobSpec, plan_job, torchrun_args
from tests.orch_cli import SECRETS, orch, with_secrets

GOOD = """\
[cluster]
workdir = "/data/orch"
master_port = 29555

[cluster.env]
NCCL_DEBUG = "WARN"

[[nodes]]
name = "g3006"
host = "g3006"
addr = "10.0.0.6"
gpus = 8

[[nodes]]
name = "g3007"
host = "g3007"
gpus = 8
"""

BAD = {
    "malformed": (GOOD.replace('[cluster.env]', '[cluster.env'), 5, "malformed TOML"),
    "unknown-key": (GOOD.replace('gpus = 8\n\n', 'gpus = 8\ngpu_count = 2\n\n', 1), 13, "unknown key 'gpu_count'"),
    "duplicate": (GOOD.replace('name = "g3007"', 'name = "g3006"'), 15, "duplicate node name 'g3006'"),
    "missing-host": (GOOD.replace('host = "g3007"\n', ''), 14, "missing the required key 'host'"),
    "bad-type": (GOOD.replace('gpus = 8\n', 'gpus = "eight"\n', 1), 12, "gpus must be an integer"),
    "bad-port": (GOOD.replace("29555", '"fast"'), 3, "master_port"),
    "bad-env-name": (GOOD.replace("NCCL_DEBUG", '"NCCL DEBUG"'), 6, "not a valid environment variable name"),
}


def assert_bad_inventory(text: str, line: int, message: str) -> None:
    """Parsing `text` as cluster.toml fails with `cluster.toml:LINE: ...MESSAGE...`."""
    with pytest.raises(InventoryError) as err:
        parse_inventory(text, "cluster.toml")
    assert str(err.value).startswith(f"cluster.toml:{line}: ") and message in str(err.value), str(err.value)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inventory_names_file_line_and_key(case):
    assert_bad_inventory(*BAD[case])


def test_good_inventory_merges_cluster_defaults():
    inventory = parse_inventory(GOOD, "cluster.toml")
    first, second = inventory.nodes
    assert (first.addr, second.addr) == ("10.0.0.6", "g3007")
    assert first.workdir == "/data/orch" and first.env == {"NCCL_DEBUG": "WARN"}
    assert inventory.master_port == 29555


@pytest.mark.parametrize("case", ["malformed", "duplicate", "missing-host", "unknown-node"])
def test_cli_rejects_bad_input_with_exit_2_and_starts_nothing(case, tmp_path, orch_home):
    inventory = tmp_path / "cluster.toml"
    inventory.write_text(GOOD if case == "unknown-node" else BAD[case][0])
    nodes = "g3006,g9999" if case == "unknown-node" else "g3006"
    result = orch("launch", "--cluster", str(inventory), "--nodes", nodes, "--", "python", "train.py", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("orch: error: ")
    assert "Traceback" not in result.stderr
    assert str(inventory) in result.stderr
    if case == "unknown-node":
        assert "unknown node 'g9999'" in result.stderr
    db = orch_home / "jobs.db"
    assert not db.exists() or sqlite3.connect(db).execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0


def test_missing_inventory_file_and_bad_env_flag(tmp_path, orch_home):
    missing = orch("launch", "--cluster", str(tmp_path / "nope.toml"), "--", "python", "x.py")
    assert missing.returncode == 2 and "nope.toml: inventory file not found" in missing.stderr
    bad_env = orch("launch", "--env", "NOVALUE", "--", "python", "x.py", cwd=tmp_path)
    assert bad_env.returncode == 2 and "expected NAME=VALUE" in bad_env.stderr
    no_job = orch("status", "nosuchjob")
    assert no_job.returncode == 2 and "no job 'nosuchjob'" in no_job.stderr


def test_plan_ranks_follow_the_order_given_and_quote_everything():
    inventory = parse_inventory(GOOD, "cluster.toml")
    spec = JobSpec(job_id="j1", nodes=["g3007", "g3006"], command=["python", "train.py", "--name", "a b'$(x)"],
                   env={"HF_TOKEN": "s3cret"})
    plan = plan_job(inventory, spec, 29555)
    assert [(p.node.name, p.rank) for p in plan.nodes] == [("g3007", 0), ("g3006", 1)]
    assert plan.master_addr == "g3007" and plan.nproc_per_node == 8
    script = plan.nodes[1].launch_script
    assert "--node_rank 1" in script and "--nnodes 2" in script and "--master_addr g3007" in script
    assert "'a b'\"'\"'$(x)'" in script
    assert "s3cret" not in script  # secrets live only in env.sh (mode 600), never in the script
    assert "HF_TOKEN=s3cret" in plan.nodes[1].env_script


def test_dry_run_prints_scripts_masks_secrets_and_touches_nothing(tmp_path, orch_home):
    inventory = tmp_path / "cluster.toml"
    text, env_args = with_secrets(GOOD)
    inventory.write_text(text)
    result = orch("launch", "--dry-run", "--cluster", str(inventory), *env_args, "--", "python", "train.py",
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("torch.distributed.run") == 2
    for name, value in SECRETS.items():
        assert result.stdout.count(f"{name}=***") == 2, name  # both nodes' env.sh, masked
        assert value not in result.stdout + result.stderr, name
    assert "NCCL_DEBUG=WARN" in result.stdout  # other values stay readable
    assert not (orch_home / "jobs.db").exists()


def test_a_bad_training_config_is_refused_before_anything_starts(tmp_path, orch_home):
    (tmp_path / "train.jsonl").write_text('{"input": "hi", "output": "hello"}\n')
    (tmp_path / "job.yaml").write_text("model: /models/on-the-nodes\ndata: {train: [train.jsonl]}\n"
                                       "lora: {r: 8, alpah: 16}\n")
    result = orch("launch", "job.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "job.yaml: lora.alpah: unknown key (did you mean lora.alpha?)" in result.stderr
    assert not (orch_home / "jobs.db").exists()  # no job recorded, nothing launched
    (tmp_path / "job.yaml").write_text("model: /models/on-the-nodes\ndata: {train: [train.jsonl]}\n")
    dry = orch("launch", "--dry-run", "job.yaml", cwd=tmp_path)  # a path only the nodes have is theirs to check
    assert dry.returncode == 0 and "# must exist on every node (job.yaml: model): /models/on-the-nodes" in dry.stdout


@pytest.mark.parametrize("command,expected", [
    (["python", "train.py", "--lr", "1"], ["train.py", "--lr", "1"]),
    (["python3", "-m", "pkg.main"], ["-m", "pkg.main"]),
    (["train.py"], ["train.py"]),
    (["bash", "run.sh"], ["--no-python", "bash", "run.sh"]),
])
def test_torchrun_args(command, expected):
    assert torchrun_args(command) == expected


def test_python_dash_c_is_refused():
    with pytest.raises(PlanError, match="put the code in a script"):
        torchrun_args(["python", "-c", "print(1)"])


def test_root_cause_is_the_node_that_failed_first():
    from orchestrator.jobs.states import FAILED, SUCCEEDED, root_cause

    cause = root_cause(["a", "b", "c"], [0, 1, 2], [FAILED, FAILED, SUCCEEDED], [1, 137, 0], [20.5, 20.1, 19.0])
    assert cause == "node b (node_rank 1) exited with exit code 137 (signal 9, SIGKILL)"


def test_the_shipped_example_inventory_is_valid():
    from orchestrator.cluster.inventory import load_inventory

    inventory = load_inventory(str(Path(__file__).parent.parent / "cluster.example.toml"))
    assert [n.name for n in inventory.nodes] == ["g3006", "g3007"]
    assert inventory.master_port is None and inventory.nodes[0].gpus == 8


def test_last_error_finds_the_users_exception_not_torchruns():
    from orchestrator.jobs.states import last_error

    log = ["step 3", "Traceback (most recent call last):", '  File "train.py", line 9, in <module>', "    1 / 0",
           "ZeroDivisionError: division by zero", "E1122 torch.distributed.elastic failed",
           "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:", "===="]
    assert last_error(log) == log[1:5]
    assert last_error(["x", "orch train: error: demo.yaml: lora.r must be > 0", "E1122 failed"]) == [
        "orch train: error: demo.yaml: lora.r must be > 0"]


ZERO_MESSAGE = ("deepspeed.runtime.zero.utils.ZeRORuntimeException: The checkpoint being loaded used a DP world size "
                "of 2 but the current world size is 1. Automatic adjustment of ZeRO's optimizer state partitioning "
                "with a new world size is not currently supported.")


@pytest.mark.parametrize("prefixed", [True, False])
def test_last_error_is_the_ranks_deepspeed_exception_whatever_torchrun_prints_after_it(prefixed):
    """A real log (torch 2.13, DeepSpeed 0.19 refusing a ZeRO-2 checkpoint on a smaller world), with torchrun's
    ChildFailedError traceback, its `Root Cause` / `error_file` block, an agent log line and the wrapper's own
    exit line after the rank's exception; also without the `[rankN]:` prefixes older torch versions lack."""
    from orchestrator.jobs.states import last_error

    log = (Path(__file__).parent / "logs" / "zero_world_size_changed.log").read_text().splitlines()
    if not prefixed:
        log = [line.removeprefix("[rank0]: ").removeprefix("[rank0]:") for line in log]
    assert log.index("============================================================") > max(
        i for i, line in enumerate(log) if ZERO_MESSAGE in line)  # torchrun's block really comes after it
    error = last_error(log)
    assert error[-1].endswith(ZERO_MESSAGE) and len(error) == 4, error
    assert not any("ChildFailedError" in line or "error_file" in line or "exited with" in line for line in error)


def test_spares_are_held_back_from_the_default_selection():
    inventory = parse_inventory('[[nodes]]\nname = "a"\nhost = "a"\n[[nodes]]\nname = "s"\nhost = "s"\nspare = true\n')
    assert [n.name for n in inventory.select(None)] == ["a"] and inventory.node("s").spare
    assert [n.name for n in inventory.select(["s", "a"])] == ["s", "a"]  # named, a spare runs like any node
    with pytest.raises(InventoryError, match="spare"):
        parse_inventory('[[nodes]]\nname = "a"\nhost = "a"\nspare = "yes"\n')
