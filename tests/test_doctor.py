"""`orch doctor` and the launch preflight on the namespace test cluster, and `orch restart --exclude-node`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.orch_cli import job_id_of, job_json, orch
from tests.test_controller_cluster import wait_state

PROJECT_SCRIPTS = ("allreduce.py",)  # copied into the `project` fixture (tests/conftest.py)


def test_doctor_reports_every_node_and_the_smoke_all_reduce_passes(env, cluster):
    result = orch("doctor", "--nodes", "node0,node1,node2", "--smoke", "--json", env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["hard"] == [] and report["smoke"] == "SUCCEEDED"
    facts = {n["name"]: n for n in report["nodes"]}
    assert set(facts) == {"node0", "node1", "node2"}
    torch_versions = {n["versions"]["torch"] for n in facts.values()}
    assert len(torch_versions) == 1 and None not in torch_versions
    assert all(abs(n["clock_skew_s"]) < 2 and n["disk_free_gb"] > 0 for n in facts.values())
    assert facts["node1"]["route"] == "eth0"  # the interface that reaches the master


def test_doctor_table_piped_keeps_headers_and_node_names_whole(env, cluster):
    import torch

    result = orch("doctor", "--nodes", "node0,node1,node2", env=env)  # stdout is a pipe: `orch doctor | cat`
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "…" not in result.stdout
    assert lines[1].split()[:8] == ["node", "ssh", "ms", "python", "torch", "transformers", "deepspeed", "cuda"]
    assert "gpus (busy)" in lines[1] and "iface to master" in lines[1]
    rows = {line.split()[0]: line for line in lines[2:5]}
    assert set(rows) == {"node0", "node1", "node2"} and all(torch.__version__ in row for row in rows.values())


def test_launch_refuses_a_node_without_torch_and_names_it(project, env, cluster, tmp_path):
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    text = cluster.inventory.read_text()
    node1 = next(n for n in cluster.nodes if n.name == "node1")
    text = text.replace(f'addr = "{node1.addr}"\n', f'addr = "{node1.addr}"\npython = "{bare}/bin/python"\n')
    inventory = tmp_path / "cluster.toml"
    inventory.write_text(text)
    launched = orch("launch", "--cluster", str(inventory), "--nodes", "node0,node1", "--", "python", "allreduce.py",
                    cwd=project, env=env)
    assert launched.returncode == 2
    assert "preflight checks failed" in launched.stderr and "node1: torch is not installed" in launched.stderr
    assert "--skip-checks" in launched.stderr and "Traceback" not in launched.stderr
    doctor = orch("doctor", "--cluster", str(inventory), "--nodes", "node0,node1", env=env)
    assert doctor.returncode == 2 and "node1: torch is not installed" in doctor.stderr


def test_restart_without_a_bad_node(project, env, cluster):
    failed = orch("launch", "--nodes", "node2,node3", "--env", "FAIL_RANK=1", "--", "python", "allreduce.py",
                  cwd=project, env=env)
    first = job_id_of(failed)
    assert job_json(first, env=env)["state"] == "FAILED"
    restarted = orch("restart", first, "--exclude-node", "node3", env=env, timeout=120)
    assert restarted.returncode == 0, restarted.stderr
    second = job_id_of(restarted)
    status = wait_state(second, {"SUCCEEDED", "FAILED"}, env)
    assert status["state"] == "SUCCEEDED" and [n["name"] for n in status["nodes"]] == ["node2"]
    assert status["restart_of"] == first and status["attempt"] == 1
    assert "rank 0/1 node node2 sum 1" in restarted.stdout
    assert Path(status["run_dir"]).is_dir()


def test_launch_refuses_a_config_naming_a_path_a_node_lacks(project, env, cluster):
    (project / "job.yaml").write_text("model: /opt/orch-test-no-such-model\ndata: {train: [train.jsonl]}\n")
    (project / "train.jsonl").write_text('{"input": "hi", "output": "hello"}\n')
    def job_dirs() -> list[set[str]]:
        folders = [cluster.node_path(n, "jobs") for n in ("node0", "node1")]
        return [{p.name for p in f.iterdir()} if f.is_dir() else set() for f in folders]

    before = job_dirs()
    launched = orch("launch", "--nodes", "node0,node1", "job.yaml", cwd=project, env=env)
    assert launched.returncode == 2 and "Traceback" not in launched.stderr
    for node in ("node0", "node1"):
        assert (f"{node}: /opt/orch-test-no-such-model (job.yaml: model) does not exist there"
                in launched.stderr), launched.stderr
    assert job_dirs() == before  # nothing started


def _master_pid(cluster, control_path: Path, node: str) -> int | None:
    """The pid of the master connection listening on `control_path` (`ssh -O check`), None if there is none."""
    check = subprocess.run(["ssh", "-F", str(cluster.ssh_config), "-o", f"ControlPath={control_path}", "-O", "check",
                            node], capture_output=True, text=True, timeout=10)
    found = re.search(r"pid=(\d+)", check.stderr)
    return int(found.group(1)) if check.returncode == 0 and found else None


def test_ssh_masters_outlive_a_command_and_the_next_commands_reuse_them(env, cluster, monkeypatch):
    from orchestrator.cluster.inventory import load_inventory
    from orchestrator.cluster.ssh import Session

    inventory = load_inventory(str(cluster.inventory))
    node = inventory.select(["node1"])[0]
    with Session(inventory.ssh_config) as session:
        session.run(node, "true")
        path = session.control_path(node)
    first = _master_pid(cluster, path, "node1")
    assert first is not None  # still there after the session closed
    assert path.parent.stat().st_mode & 0o777 == 0o700 and path.parent.parent.stat().st_mode & 0o777 == 0o700
    assert orch("doctor", "--nodes", "node1", env=env, timeout=120).returncode == 0
    assert _master_pid(cluster, path, "node1") == first  # another orch command multiplexed over the same one
    cluster.ssh_config.touch()  # an edited ssh_config (a host moved, say) gets fresh masters
    with Session(inventory.ssh_config) as session:
        session.run(node, "true")
        assert session.control_path(node) != path and _master_pid(cluster, session.control_path(node), "node1")
    monkeypatch.setenv("ORCH_SSH_PERSIST", "0")  # opted out: a command's masters end with it
    with Session(inventory.ssh_config) as session:
        session.run(node, "true")
        private = session.control_path(node)
        assert private != path and _master_pid(cluster, private, "node1") is not None
    assert _master_pid(cluster, private, "node1") is None
