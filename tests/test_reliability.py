"""Fault injection on the namespace test cluster: each case checks the final state, how long it took, and that
no process carrying the job's tag is left on any node."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.orch_cli import FIXTURES, job_id_of, job_json, orch
from tests.test_controller_cluster import tagged_processes, wait_state

FINAL = {"SUCCEEDED", "FAILED", "STOPPED", "LOST"}


PROJECT_SCRIPTS = ("steady.py",)  # copied into the `project` fixture (tests/conftest.py)


def start_detached(project: Path, env: dict, *args: str, nodes: str = "node0,node1") -> str:
    launched = orch("launch", "--detach", "--nodes", nodes, *args, "--", "python", "steady.py", cwd=project,
                    env=env)
    assert launched.returncode == 0, launched.stderr
    job_id = job_id_of(launched)
    assert wait_state(job_id, {"RUNNING"}, env)["state"] == "RUNNING"
    return job_id


def worker_pids(cluster, node: str, job_id: str, torchrun: bool = False) -> list[int]:
    """Tagged python processes on a node: the training workers, or the torchrun agent."""
    pattern = "torch.distributed.run" if torchrun else "steady.py"
    exclude = "" if torchrun else "| grep -v torch.distributed.run"
    script = (f"for e in /proc/[0-9]*/environ; do grep -qzxF ORCH_JOB_ID={job_id} $e 2>/dev/null || continue; "
              f"p=${{e%/environ}}; tr '\\0' ' ' < $p/cmdline | grep -q {pattern} && "
              f"(tr '\\0' ' ' < $p/cmdline {exclude} >/dev/null) && echo ${{p#/proc/}}; done")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pids = [int(p) for p in cluster.exec(node, script).stdout.split()]
        if pids:
            return pids
        time.sleep(0.3)
    raise AssertionError(f"no {pattern} process of {job_id} on {node}")


def assert_clean(cluster, job_id: str) -> None:
    assert tagged_processes(cluster, job_id) == {n.name: 0 for n in cluster.nodes}


def wait_final(job_id: str, env: dict, timeout: float = 60) -> tuple[dict, float]:
    started = time.monotonic()
    status = wait_state(job_id, FINAL, env, timeout)
    return status, time.monotonic() - started


@pytest.mark.parametrize("target", ["worker", "torchrun"])
def test_sigkill_on_non_master_fails_the_job_fast(project, env, cluster, target):
    job_id = start_detached(project, env, "--env", "STEADY_S=120")
    victim = worker_pids(cluster, "node1", job_id, torchrun=target == "torchrun")[0]
    cluster.exec("node1", f"kill -KILL {victim}")
    status, took = wait_final(job_id, env)
    assert status["state"] == "FAILED", status
    node1 = next(n for n in status["nodes"] if n["name"] == "node1")
    assert node1["state"] == "FAILED" and node1["exit_code"] == 137, status  # 128 + SIGKILL
    assert "node node1" in status["root_cause"] and "SIGKILL" in status["root_cause"], status
    assert took < 15, took
    assert_clean(cluster, job_id)


def test_worker_exit_on_master_fails_the_job(project, env, cluster):
    shutil.copy(FIXTURES / "allreduce.py", project / "allreduce.py")
    launched = orch("launch", "--detach", "--nodes", "node0,node1", "--env", "FAIL_RANK=0", "--env", "SLEEP_S=120",
                    "--", "python", "allreduce.py", cwd=project, env=env)
    job_id = job_id_of(launched)
    status, took = wait_final(job_id, env)
    assert status["state"] == "FAILED"
    assert status["nodes"][0]["exit_code"] == 3 and status["nodes"][0]["state"] == "FAILED"
    assert took < 20
    assert_clean(cluster, job_id)


def test_network_loss_marks_the_job_failed_and_stop_cleans_up_after(project, env, cluster):
    job_id = start_detached(project, env, "--env", "STEADY_S=300", nodes="node2,node3")
    node3 = next(n for n in cluster.nodes if n.name == "node3")
    link_down = time.time()
    subprocess.run(["ip", "netns", "exec", node3.netns, "ip", "link", "set", "eth0", "down"], check=True)
    try:
        status, _ = wait_final(job_id, env, timeout=90)
        assert status["state"] == "FAILED", status  # LOST is for a job whose every node vanished
        by_name = {n["name"]: n for n in status["nodes"]}
        assert by_name["node3"]["state"] == "LOST"
        assert "node3" in status["root_cause"]
        # the supervisor's probe hangs 2 s, a TCP connect to node3's SSH port fails within 2 s more: node3 is
        # LOST, node2 is stopped at once, and then the job is recorded FAILED
        final_after = status["ended"] - link_down
        print(f"network loss: node2 stopped and the job final {final_after:.1f} s after the link went down")
        assert final_after < 10, status
        assert by_name["node2"]["state"] == "STOPPED", status
        assert tagged_processes(cluster, job_id)["node2"] == 0  # the reachable node was stopped
    finally:
        subprocess.run(["ip", "netns", "exec", node3.netns, "ip", "link", "set", "eth0", "up"], check=True)
    stopped = orch("stop", job_id, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert_clean(cluster, job_id)


@pytest.mark.parametrize("moment", ["after-sync", "before-start", "following"])
def test_killed_launcher_leaves_a_truthful_status_and_a_working_stop(project, env, cluster, moment):
    extra = {} if moment == "following" else {"ORCH_FAILPOINT": f"{moment}:30"}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "launch", "--nodes", "node0,node1", "--env", "STEADY_S=300", "--",
         "python", "steady.py"], cwd=project, env={**os.environ, **env, **extra}, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True)
    time.sleep(6 if moment == "following" else 2.5)
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    listing = orch("status", "--json", env=env, check=True).stdout
    job_id = json.loads(listing)[0]["id"]
    status = job_json(job_id, env=env)
    if moment == "following":
        assert status["state"] == "RUNNING"  # the job outlives its terminal
        assert worker_pids(cluster, "node1", job_id)
    else:
        assert status["state"] == "FAILED" and "launch interrupted" in status["root_cause"]
    stopped = orch("stop", job_id, env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert job_json(job_id, env=env)["state"] in ("STOPPED", "FAILED")
    assert_clean(cluster, job_id)


def test_a_launch_that_dies_after_a_node_started_leaves_nothing(project, env, cluster):
    # node1's start fails 1.5 s after node0's began: node0 is stopped again, and the job names node1
    failed = orch("launch", "--detach", "--nodes", "node0,node1", "--env", "STEADY_S=300", "--", "python",
                  "steady.py", cwd=project, env={**env, "ORCH_FAILPOINT": "start-fail:node1"})
    assert failed.returncode == 2 and "node1: could not start the job" in failed.stderr, failed.stderr
    job_id = json.loads(orch("status", "--json", env=env, check=True).stdout)[0]["id"]
    status = job_json(job_id, env=env)
    assert status["state"] == "FAILED" and "node1: could not start" in status["root_cause"], status
    assert "already started, now stopped: node0" in status["root_cause"], status
    assert (cluster.node_path("node0", "jobs", job_id) / "pgid").exists()  # node0 had really started
    assert_clean(cluster, job_id)

    # the launcher is killed while it waits between node2's start and node3's
    launcher = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "launch", "--nodes", "node2,node3", "--env", "STEADY_S=300", "--",
         "python", "steady.py"], cwd=project, env={**os.environ, **env, "ORCH_FAILPOINT": "start:node3:60"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (job_id := next((j["id"] for j in json.loads(orch("status", "--json", env=env, check=True).stdout)
                               if "node2" in [n["name"] for n in j["nodes"]]), None)) or not worker_pids(
            cluster, "node2", job_id, torchrun=True):  # its torchrun waits for node3 to join
        assert time.monotonic() < deadline
        time.sleep(0.3)
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()
    status = job_json(job_id, env=env)  # this look finds the launcher gone and sweeps every node
    assert status["state"] == "FAILED", status
    assert "died after starting node2 and before starting node3" in status["root_cause"], status
    assert_clean(cluster, job_id)


def test_restart_after_failure_relaunches_and_is_visible(project, env, cluster):
    launched = orch("launch", "--nodes", "node0,node1", "--max-restarts", "2", "--env", "FAIL_ATTEMPTS=1",
                    "--", "python", "steady.py", cwd=project, env=env, timeout=180)
    assert launched.returncode == 0, launched.stderr
    first = job_id_of(launched)
    first_status = job_json(first, env=env)
    # both ranks exit 5; whichever is seen first is the root cause, and fail-fast may stop the other before it exits
    assert first_status["state"] == "FAILED" and "exit code 5" in first_status["root_cause"]
    assert 5 in [n["exit_code"] for n in first_status["nodes"]]
    second = first_status["restarted_as"]
    second_status = job_json(second, env=env)
    assert second_status["state"] == "SUCCEEDED"
    assert second_status["attempt"] == 1 and second_status["restart_of"] == first
    assert "rank 0 up" in launched.stdout and "attempt 1" in launched.stdout
    assert "restarted as job" in launched.stderr


def test_a_spare_takes_the_failed_nodes_place_under_max_restarts(project, cluster, orch_home):
    """node2 and node3 are spares (node2's python is missing: the preflight passes over it); a job on the other
    nodes (the default) loses node1 on its first attempt; the restart runs on node0 and node3, at the same size.
    By hand, `orch restart --nodes` takes the nodes as given (no spare); with node2 mended, `orch restart JOB
    --exclude-node node0` puts a spare in the failed node1's place as the supervisor did, and one in node0's.
    """
    text = cluster.inventory.read_text()
    healthy = text.replace('name = "node2"\n', 'name = "node2"\nspare = true\n').replace(
        'name = "node3"\n', 'name = "node3"\nspare = true\n')
    inventory = project / "spares.toml"
    inventory.write_text(healthy.replace('name = "node2"\n', 'name = "node2"\npython = "/nonexistent/python3"\n'))
    env = {"ORCH_CLUSTER": str(inventory), "ORCH_HOME": str(orch_home)}
    launched = orch("launch", "--max-restarts", "1", "--env", "FAIL_NODE=node1", "--", "python", "steady.py",
                    cwd=project, env=env, timeout=180)
    assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-2000:]
    first = job_json(job_id_of(launched), env=env)
    assert [n["name"] for n in first["nodes"]] == ["node0", "node1"]  # spares wait outside the job
    assert first["state"] == "FAILED" and first["root_cause"].startswith("node node1 "), first
    second = job_json(first["restarted_as"], env=env)
    assert f"orch: job {second['id']}: node1 -> node3 (spare), chosen by the preflight" in launched.stderr
    assert second["state"] == "SUCCEEDED" and [n["name"] for n in second["nodes"]] == ["node0", "node3"], second
    assert second["replaced"] == {"node1": "node3"} and second["restart_of"] == first["id"]
    shown = orch("status", second["id"], env=env, check=True).stdout
    assert f"replaced: node1 by spare node3 (failed in job {first['id']})" in shown, shown
    history = orch("status", env=env, check=True).stdout
    assert "node0,node3 (node3 for node1)" in history, history

    as_given = orch("restart", first["id"], "--nodes", "node2,node0", env=env)  # no spare for node2 here
    assert as_given.returncode == 2 and "node2: python not usable" in as_given.stderr, as_given.stderr
    inventory.write_text(healthy)  # node2 mended
    by_hand = orch("restart", first["id"], "--exclude-node", "node0", env=env, timeout=180)
    assert by_hand.returncode == 0, by_hand.stdout[-2000:] + by_hand.stderr[-2000:]
    third = job_json(job_id_of(by_hand), env=env)
    assert (f"orch: job {third['id']}: node0 -> node3 (spare), node1 -> node2 (spare), chosen by the preflight; "
            "--no-spares runs on fewer nodes instead\n") in by_hand.stderr, by_hand.stderr
    assert third["state"] == "SUCCEEDED" and [n["name"] for n in third["nodes"]] == ["node3", "node2"], third
    assert third["replaced"] == {"node0": "node3", "node1": "node2"} and third["restart_of"] == first["id"]
    shown = orch("status", third["id"], env=env, check=True).stdout
    assert (f"replaced: node0 by spare node3 (excluded from job {first['id']}), node1 by spare node2 (failed in job "
            f"{first['id']})") in shown, shown


def test_a_job_that_always_fails_stops_after_max_restarts_plus_one_attempts(project, env, cluster):
    launched = orch("launch", "--nodes", "node2,node3", "--max-restarts", "1", "--env", "FAIL_ATTEMPTS=99", "--",
                    "python", "steady.py", cwd=project, env=env, timeout=180)
    assert launched.returncode == 1, launched.stderr
    first = job_json(job_id_of(launched), env=env)
    assert "giving up: all 2 attempts failed (--max-restarts 1" in launched.stderr, launched.stderr
    # the detached supervisor, which does the restarting, gives up too (and only then is no third attempt coming)
    supervisor_log = Path(first["run_dir"]) / "supervisor.log"
    deadline = time.monotonic() + 30
    while "giving up" not in supervisor_log.read_text():
        assert time.monotonic() < deadline, supervisor_log.read_text()
        time.sleep(0.3)
    jobs = json.loads(orch("status", "--json", env=env, check=True).stdout)
    assert sorted((j["attempt"], j["state"]) for j in jobs) == [(0, "FAILED"), (1, "FAILED")], jobs
    last = job_json(first["restarted_as"], env=env)
    assert last["restart_of"] == first["id"] and not last.get("restarted_as") and "exit code 5" in last["root_cause"]
    for job in jobs:
        assert_clean(cluster, job["id"])


def rank_stacks(report: Path) -> dict[str, str]:
    """A hang report's section per node."""
    sections = report.read_text().split("===== ")[1:]
    return {section.split("\n", 1)[0]: section for section in sections}


def assert_every_rank_stack(report: Path, nodes: list[str]) -> None:
    """Each node's section holds its worker's own Python stack (the sleeping line of steady.py), not a header."""
    sections = rank_stacks(report)
    assert sorted(sections) == nodes, report.read_text()
    for node, text in sections.items():
        assert "most recent call first" in text and 'steady.py", line' in text, (node, text)


def test_hang_is_detected_with_stack_dumps(project, env, cluster, orch_home):
    launched = orch("launch", "--nodes", "node0,node1", "--hang-timeout", "10", "--env", "STEADY_S=120",
                    "--env", "QUIET_AFTER_S=1", "--", "python", "steady.py", cwd=project, env=env, timeout=120)
    job_id = job_id_of(launched)
    status = job_json(job_id, env=env)
    assert status["state"] == "FAILED"
    assert status["root_cause"].startswith("hang: no log output from any rank for 10 s")
    assert_every_rank_stack(Path(status["root_cause"].rsplit("stacks: ", 1)[1]), ["node0", "node1"])
    assert_clean(cluster, job_id)


def test_on_hang_wait_keeps_the_job_and_reports_again(project, env, cluster):
    job_id = start_detached(project, env, "--hang-timeout", "4", "--on-hang", "wait", "--env", "STEADY_S=120",
                            "--env", "QUIET_AFTER_S=1", nodes="node2,node3")
    run_dir = Path(job_json(job_id, env=env)["run_dir"])
    # on a loaded machine torchrun's start-up and the workers' imports may already count as quiet: count only the
    # reports begun after every worker said it is up (imports done, process group joined)
    deadline = time.monotonic() + 60
    while not all(f"rank {r} up" in orch("logs", job_id, "--all", env=env).stdout for r in (0, 1)):
        assert time.monotonic() < deadline, orch("logs", job_id, "--all", env=env).stdout
        time.sleep(0.5)
    workers_up = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() + 1))  # reports named by their start
    deadline = time.monotonic() + 40
    while len(reports := [r for r in sorted(run_dir.glob("hang-*.txt")) if r.stem[5:] >= workers_up]) < 2:
        assert time.monotonic() < deadline, list(run_dir.iterdir())
        time.sleep(0.5)
    assert job_json(job_id, env=env)["state"] == "RUNNING"
    for report in reports[:2]:
        assert_every_rank_stack(report, ["node2", "node3"])
    assert orch("stop", job_id, env=env).returncode == 0
    assert_clean(cluster, job_id)


def test_restart_refuses_node_choices_it_cannot_follow_in_one_line(orch_home):
    """Before any SSH: `--nodes` with `--exclude-node`, an empty `--nodes`, a node the job did not run on, every
    node excluded with `--no-spares`."""
    from orchestrator.jobs.store import Store
    from tests.orch_cli import assert_refused
    from tests.synthetic_jobs import add_job

    job = add_job(Store(), "20260101-000000-beef", state="FAILED")
    env = {"ORCH_HOME": str(orch_home)}
    for args, says in ((["--nodes", "node0", "--exclude-node", "node1"], "either --nodes or --exclude-node"),
                       (["--nodes", ","], "--nodes is empty"),
                       (["--exclude-node", "node7"], "did not run on node7"),
                       (["--exclude-node", "node0", "--exclude-node", "node1", "--no-spares"], "no node to run on")):
        assert_refused(orch("restart", job.id, *args, env=env), says)
