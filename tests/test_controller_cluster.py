"""The controller end to end on the namespace test cluster: real sshd, rsync, torchrun (gloo), SQLite."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.orch_cli import FIXTURES, SECRETS, job_id_of, job_json, orch, with_secrets



PROJECT_SCRIPTS = ("allreduce.py",)  # copied into the `project` fixture (tests/conftest.py)


def tagged_processes(cluster, job_id: str) -> dict[str, int]:
    """How many live processes carry this job's tag on each node."""
    counts = {}
    for node in cluster.nodes:
        script = (f"n=0; for e in /proc/[0-9]*/environ; do grep -qzxF ORCH_JOB_ID={job_id} $e 2>/dev/null || "
                  "continue; p=${e%/environ}; grep -q '^State:.*Z' $p/status 2>/dev/null || n=$((n+1)); done; echo $n")
        counts[node.name] = int(cluster.exec(node.name, script).stdout.strip())
    return counts


def wait_state(job_id: str, states: set[str], env: dict, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = job_json(job_id, env=env)
        if status["state"] in states or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


@pytest.mark.parametrize("nodes,nproc", [("node0,node1", 2), ("node0,node1,node2,node3", 1)])
def test_allreduce_across_nodes_succeeds_with_prefixed_logs(project, env, nodes, nproc):
    launched = orch("launch", "--nodes", nodes, "--nproc-per-node", str(nproc), "--", "python", "allreduce.py",
                    cwd=project, env=env)
    assert launched.returncode == 0, launched.stderr
    job_id = job_id_of(launched)
    names = nodes.split(",")
    world = len(names) * nproc
    expected_sum = world * (world + 1) // 2
    # attached launch follows rank 0: it shows the master's ranks
    assert f"rank 0/{world} node node0 sum {expected_sum}" in launched.stdout
    status = job_json(job_id, env=env)
    assert status["state"] == "SUCCEEDED"
    assert [(n["name"], n["rank"], n["state"], n["exit_code"]) for n in status["nodes"]] == [
        (name, rank, "SUCCEEDED", 0) for rank, name in enumerate(names)]
    merged = orch("logs", job_id, "--all", env=env, check=True).stdout.splitlines()
    for rank in range(world):
        node_rank = rank // nproc
        prefix = f"[{names[node_rank]}|{node_rank}]"
        assert any(line.startswith(prefix) and f"rank {rank}/{world} node {names[node_rank]} sum {expected_sum}"
                   in line for line in merged), (rank, merged)
    one_node = orch("logs", job_id, "--node", names[-1], env=env, check=True).stdout
    assert f"rank {world - 1}/{world}" in one_node and "rank 0/" not in one_node
    # piped (`orch status | cat`), the tables keep the job id and node names whole, one row per line
    listed = orch("status", env=env, check=True).stdout.splitlines()
    assert any(line.startswith(job_id) and f" {nodes} " in line for line in listed), listed
    per_node = orch("status", job_id, env=env, check=True).stdout.splitlines()
    assert per_node[0].startswith(f"job {job_id}  SUCCEEDED")
    assert [line.split()[:3] for line in per_node[2:]] == [[name, str(rank), "SUCCEEDED"]
                                                           for rank, name in enumerate(names)], per_node


def test_failing_rank_fails_the_job_with_its_exit_code(project, env, cluster):
    started = time.monotonic()
    launched = orch("launch", "--nodes", "node0,node1", "--env", "FAIL_RANK=1", "--env", "SLEEP_S=120", "--",
                    "python", "allreduce.py", cwd=project, env=env)
    elapsed = time.monotonic() - started
    assert launched.returncode == 1
    job_id = job_id_of(launched)
    status = job_json(job_id, env=env)
    assert status["state"] == "FAILED"
    by_name = {n["name"]: n for n in status["nodes"]}
    assert by_name["node1"]["state"] == "FAILED" and by_name["node1"]["exit_code"] == 3
    assert by_name["node0"]["state"] in ("STOPPED", "FAILED")  # stopped by fail-fast, not left for 120 s
    assert "node node1" in status["root_cause"] and "exit code 3" in status["root_cause"]
    assert elapsed < 60
    assert tagged_processes(cluster, job_id) == {n.name: 0 for n in cluster.nodes}


def test_stop_leaves_nothing_and_spares_the_other_job(project, env, cluster):
    ids = []
    for attempt in range(2):
        force = ("--force",) if attempt else ()
        launched = orch("launch", "--detach", *force, "--nodes", "node2,node3", "--nproc-per-node", "2",
                        "--env", "SLEEP_S=300", "--", "python", "allreduce.py", cwd=project, env=env)
        assert launched.returncode == 0, launched.stderr
        ids.append(job_id_of(launched))
        if not attempt:  # the nodes are now locked by the first job
            refused = orch("launch", "--detach", "--nodes", "node3", "--", "python", "allreduce.py", cwd=project,
                           env=env)
            assert refused.returncode == 2 and f"node3 (job {ids[0]})" in refused.stderr
    victim, neighbour = ids
    for job_id in ids:
        assert wait_state(job_id, {"RUNNING"}, env)["state"] == "RUNNING"
    # let the workers (own sessions, started by torchrun) come up: torchrun + 2 workers on each of the two nodes
    # (both jobs: the neighbour's count after the stop is only meaningful once all of its processes were up)
    deadline = time.monotonic() + 60
    for job_id in ids:
        while not all(tagged_processes(cluster, job_id)[name] >= 3 for name in ("node2", "node3")):
            assert time.monotonic() < deadline, tagged_processes(cluster, job_id)
            time.sleep(0.5)
    stopped = orch("stop", victim, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert job_json(victim, env=env)["state"] == "STOPPED"
    assert tagged_processes(cluster, victim) == {n.name: 0 for n in cluster.nodes}
    neighbour_procs = tagged_processes(cluster, neighbour)
    assert neighbour_procs["node2"] >= 3 and neighbour_procs["node3"] >= 3
    assert job_json(neighbour, env=env)["state"] == "RUNNING"
    orch("stop", neighbour, env=env, check=True)
    assert tagged_processes(cluster, neighbour) == {n.name: 0 for n in cluster.nodes}


def test_relaunch_sends_only_the_changed_file(project, env, cluster):
    (project / "data").mkdir()
    for i in range(5):
        (project / "data" / f"part{i}.txt").write_text(f"shard {i}\n" * 100)
    (project / ".gitignore").write_text("*.ckpt\n")
    (project / "big.ckpt").write_text("ignored")
    args = ("launch", "--nodes", "node0,node1", "--", "python", "allreduce.py")
    first = orch(*args, cwd=project, env=env, check=True).stdout.splitlines()[0]
    (project / "data" / "part3.txt").write_text("changed\n")
    second = orch(*args, cwd=project, env=env, check=True).stdout.splitlines()[0]
    sent_first = json.loads((Path(env["ORCH_HOME"]) / "runs" / first / "sync.json").read_text())
    sent_second = json.loads((Path(env["ORCH_HOME"]) / "runs" / second / "sync.json").read_text())
    for node in ("node0", "node1"):
        assert "big.ckpt" not in sent_first[node]["files_sent"]
        assert "data/part3.txt" in sent_first[node]["files_sent"]
        assert sent_second[node]["files_sent"] == ["data/part3.txt"]
    # each job runs from its own snapshot: the first job's copy still holds the old content
    old = cluster.node_path("node1", "jobs", first, "code", "data", "part3.txt").read_text()
    new = cluster.node_path("node1", "jobs", second, "code", "data", "part3.txt").read_text()
    assert old.startswith("shard 3") and new == "changed\n"
    # nothing changed since: no rsync at all, the node's cache is known current and snapshotted as is
    third = orch(*args, cwd=project, env=env, check=True).stdout.splitlines()[0]
    sent_third = json.loads((Path(env["ORCH_HOME"]) / "runs" / third / "sync.json").read_text())
    for node in ("node0", "node1"):
        assert sent_third[node] == {"files_sent": [], "bytes_sent": 0, "up_to_date": True}
    snapshot = cluster.node_path("node1", "jobs", third, "code")
    assert sorted(p.name for p in (snapshot / "data").iterdir()) == [f"part{i}.txt" for i in range(5)]
    assert (snapshot / "data" / "part3.txt").read_text() == "changed\n" and not (snapshot / "big.ckpt").exists()
    # a job that writes into a synced file in place changes the cache through the hard link: the next launch
    # notices and repairs it
    with open(snapshot / "data" / "part1.txt", "a") as written_by_the_job:
        written_by_the_job.write("appended by job 3\n")
    fourth = orch(*args, cwd=project, env=env, check=True).stdout.splitlines()[0]
    sent_fourth = json.loads((Path(env["ORCH_HOME"]) / "runs" / fourth / "sync.json").read_text())
    assert sent_fourth["node1"]["up_to_date"] is False and sent_fourth["node1"]["files_sent"] == ["data/part1.txt"]
    assert sent_fourth["node0"]["up_to_date"] is True  # node0's cache was not touched
    repaired = cluster.node_path("node1", "jobs", fourth, "code", "data", "part1.txt").read_text()
    assert repaired == "shard 1\n" * 100


def test_a_cache_another_checkout_synced_into_is_not_taken_as_current(project, env, cluster, tmp_path):
    """Two checkouts with the same folder name share a node's code cache: each launch gets its own files."""
    other = tmp_path / "elsewhere" / project.name
    shutil.copytree(project, other)
    (other / "only_in_other.txt").write_text("other checkout\n")
    args = ("launch", "--nodes", "node0", "--", "python", "allreduce.py")
    orch(*args, cwd=project, env=env, check=True)
    orch(*args, cwd=other, env=env, check=True)
    mine = orch(*args, cwd=project, env=env, check=True).stdout.splitlines()[0]
    sent = json.loads((Path(env["ORCH_HOME"]) / "runs" / mine / "sync.json").read_text())
    assert sent["node0"]["up_to_date"] is False
    assert not cluster.node_path("node0", "jobs", mine, "code", "only_in_other.txt").exists()


def test_changed_host_key_is_refused(project, env, cluster, tmp_path):
    known = cluster.root / "known_hosts"
    original = known.read_text()
    try:
        lines = original.splitlines()
        fake_key = "AAAAC3NzaC1lZDI1NTE5AAAAIGJvZ3VzYm9ndXNib2d1c2JvZ3VzYm9ndXNib2d1c2Jv"
        lines[1] = f"{lines[1].split()[0]} ssh-ed25519 {fake_key}"
        known.write_text("\n".join(lines) + "\n")
        launched = orch("launch", "--nodes", "node0,node1", "--", "python", "allreduce.py", cwd=project, env=env)
    finally:
        known.write_text(original)
    assert launched.returncode == 2
    assert "node1" in launched.stderr and "Traceback" not in launched.stderr


def test_hostile_arguments_and_env_pass_through_literally(project, env, cluster, tmp_path):
    shutil.copy(FIXTURES / "echo_args.py", project / "echo_args.py")
    canary = tmp_path / "pwned"
    hostile = ["it's", f"$(touch {canary})", f"`touch {canary}`", "a;touch " + str(canary), "two\nlines", '"q"']
    tricky_env = f"x'$(touch {canary})\"`id`;y"
    launched = orch("launch", "--nodes", "node0,node1", "--env", f"TRICKY={tricky_env}", "--", "python",
                    "echo_args.py", *hostile, cwd=project, env=env)
    assert launched.returncode == 0, launched.stderr
    job_id = job_id_of(launched)
    lines = orch("logs", job_id, "--all", env=env, check=True).stdout.splitlines()
    seen = [json.loads(line.split("ARGS ", 1)[1]) for line in lines if "ARGS " in line]
    assert len(seen) == 2
    assert all(s == {"argv": hostile, "env": tricky_env} for s in seen)
    assert not canary.exists()
    for node in cluster.nodes[:2]:
        assert not cluster.exec(node.name, f"test -e {canary} && echo yes").stdout.strip()


def test_tb_brings_only_the_events_of_that_job_not_the_projects_other_runs(project, env, cluster):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    shutil.copy(FIXTURES / "tb_events.py", project / "tb_events.py")
    jobs = [orch("launch", "--nodes", "node0", "--nproc-per-node", "1", "--", "python", "tb_events.py", cwd=project,
                 env=env, check=True).stdout.splitlines()[0].strip() for _ in range(2)]
    shared = cluster.node_path("node0", "outputs", project.name, "out", "runs")
    assert len(list(shared.glob("*/events.out.tfevents*"))) == 2  # both jobs wrote into the project's outputs
    for job_id in jobs:
        tb = orch("tb", job_id, env=env, check=True)
        assert "1 event file(s)" in tb.stdout, tb.stdout
        fetched = (Path(env["ORCH_HOME"]) / "runs" / job_id / "tensorboard").rglob("events.out.tfevents*")
        tags = {tag for path in fetched for tag in EventAccumulator(str(path)).Reload().Tags()["scalars"]}
        assert tags == {f"job/{job_id}"}


def test_secrets_stay_out_of_the_run_folder_and_reach_nodes_only_in_a_private_env_sh(project, env, cluster, tmp_path):
    shutil.copy(FIXTURES / "echo_args.py", project / "echo_args.py")
    text, env_args = with_secrets(cluster.inventory.read_text())
    inventory = tmp_path / "cluster.toml"
    inventory.write_text(text)
    env = {**env, "ORCH_CLUSTER": str(inventory)}
    launched = orch("launch", "--nodes", "node0,node1", *env_args, "--", "python", "echo_args.py", cwd=project, env=env)
    assert launched.returncode == 0, launched.stderr
    job_id = job_id_of(launched)
    shown = launched.stdout + launched.stderr + orch("logs", job_id, "--all", env=env, check=True).stdout
    run_dir = Path(env["ORCH_HOME"]) / "runs" / job_id
    kept = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    assert run_dir / "cluster.toml" in kept and run_dir / "nodes" / "0-node0" / "env.json" in kept
    leaks = [(name, str(path)) for name, value in SECRETS.items() for path, data in kept.items()
             if value.encode() in data] + [(name, "screen") for name, value in SECRETS.items() if value in shown]
    assert not leaks
    assert json.loads((run_dir / "nodes" / "1-node1" / "env.json").read_text())["OPENAI_KEY"] == "***"
    for name in ("node0", "node1"):
        env_sh = cluster.node_path(name, "jobs", job_id, "env.sh")
        assert env_sh.stat().st_mode & 0o777 == 0o600
        assert all(f"{key}={value}" in env_sh.read_text() for key, value in SECRETS.items())


def test_a_python_exception_on_a_rank_is_the_root_cause(project, env, cluster):
    launched = orch("launch", "--nodes", "node2,node3", "--env", "RAISE_RANK=1", "--env", "SLEEP_S=120", "--",
                    "python", "allreduce.py", cwd=project, env=env)
    assert launched.returncode == 1
    status = job_json(job_id_of(launched), env=env)
    cause = status["root_cause"].splitlines()
    assert status["state"] == "FAILED" and cause[0].startswith("node node3 (node_rank 1) exited with exit code 1")
    # the exception's last lines, not torchrun's report that a child failed
    assert cause[-1].endswith("ValueError: shard 1 is corrupt: expected 4096 rows, found 17"), cause
    assert any("in load_shard" in line for line in cause) and "ChildFailedError" not in status["root_cause"]
    assert tagged_processes(cluster, status["id"]) == {n.name: 0 for n in cluster.nodes}


def test_orch_itself_checks_host_keys_whatever_the_ssh_config_says(cluster, orch_home, tmp_path):
    """An ssh_config with no BatchMode and no StrictHostKeyChecking works, and one that says `no` cannot make orch
    accept an unknown or changed host key (nor add it to known_hosts)."""
    plain = "\n".join(line for line in cluster.ssh_config.read_text().splitlines()
                      if "StrictHostKeyChecking" not in line and "BatchMode" not in line)
    original = (cluster.root / "known_hosts").read_text().splitlines()
    fake_key = "AAAAC3NzaC1lZDI1NTE5AAAAIGJvZ3VzYm9ndXNib2d1c2JvZ3VzYm9ndXNib2d1c2Jv"
    cases = {"plain": (plain, original),
             "unknown": (plain + "\nHost *\n  StrictHostKeyChecking no\n", original[:1]),
             "changed": (plain + "\nHost *\n  StrictHostKeyChecking no\n",
                         [original[0], f"{original[1].split()[0]} ssh-ed25519 {fake_key}"])}
    for case, (config, known) in cases.items():
        known_file, config_file = tmp_path / f"{case}.known_hosts", tmp_path / f"{case}.ssh_config"
        known_file.write_text("\n".join(known) + "\n")
        config_file.write_text(config.replace(str(cluster.root / "known_hosts"), str(known_file)))
        inventory = tmp_path / f"{case}.toml"
        inventory.write_text(cluster.inventory.read_text().replace(str(cluster.ssh_config), str(config_file)))
        doctor = orch("doctor", "--nodes", "node0,node1", "--cluster", str(inventory), timeout=120)
        if case == "plain":
            assert doctor.returncode == 0, doctor.stdout + doctor.stderr
            continue
        assert doctor.returncode == 2 and "node1" in doctor.stderr and "Traceback" not in doctor.stderr, (
            case, doctor.stdout, doctor.stderr)
        assert known_file.read_text().splitlines() == known  # nothing learned behind the user's back
