"""`orch launch / status / logs / stop` on a real Slurm 22.05 cluster (slurmctld + 4 slurmd in namespaces,
tests/cluster/slurm.py), one cluster for the module. The nodes share this machine's filesystem (the shared workdir);
each has its own PID namespace, which this machine's /proc sees whole, so a test sees every node's processes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.needs import missing

from tests.orch_cli import job_json, orch
from tests.test_controller_cluster import wait_state

pytestmark = pytest.mark.cluster
PROJECT_SCRIPTS = ("allreduce.py", "escaper.py", "steady.py")


@pytest.fixture(scope="module")
def slurm():
    """A 4-node Slurm cluster; skipped (loudly) where this machine cannot run one, failed instead under CI=true."""
    from tests.cluster import slurm as slurm_cluster

    reason = slurm_cluster.missing()
    if reason:
        missing(f"the Slurm test cluster cannot run: {reason}")
    cluster = slurm_cluster.up(4)
    yield cluster
    cluster.down()


@pytest.fixture
def env(slurm, orch_home: Path) -> dict:
    return {"ORCH_CLUSTER": str(slurm.inventory), "ORCH_HOME": str(orch_home), **slurm.env}


@pytest.fixture(scope="module")
def timed_out(slurm, tmp_path_factory) -> tuple[str, dict]:
    """A job with a one-minute time limit (Slurm's smallest) on node4, started first: it ends while the other
    tests run, and the last test checks how it ended."""
    from tests.orch_cli import make_project

    folder = tmp_path_factory.mktemp("timed")
    project = make_project(folder)
    inventory = folder / "timed.toml"
    inventory.write_text(slurm.inventory.read_text().replace('partition = "debug"', 'partition = "debug"\ntime = "1"'))
    env = {"ORCH_CLUSTER": str(inventory), "ORCH_HOME": str(folder / "home"), **slurm.env}
    launched = orch("launch", "--detach", "--nodes", "node4", "--", "sleep", "600", cwd=project, env=env)
    assert launched.returncode == 0, launched.stderr
    return launched.stdout.strip().splitlines()[-1], env


def tagged(job_id: str) -> list[int]:
    """Live processes carrying the job's tag, on any node (they share this machine's process table)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"ORCH_JOB_ID={job_id}".encode() in environ.read_bytes().split(b"\0"):
                if "\nState:\tZ" not in (environ.parent / "status").read_text():
                    found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def parent_name(pid: int) -> str:
    try:
        ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        return Path(f"/proc/{ppid}/comm").read_text().strip()
    except (OSError, IndexError):
        return ""


def launch(project: Path, env: dict, *args: str) -> str:
    launched = orch("launch", "--detach", *args, cwd=project, env=env)
    assert launched.returncode == 0, launched.stderr
    return launched.stdout.strip().splitlines()[-1]


def test_allreduce_ranks_follow_the_order_given_with_prefixed_logs(project, env, slurm, timed_out):
    counted = launch(project, env, "--nodes", "2", "--", "echo", "counted")  # a count: Slurm picks the nodes
    launched = orch("launch", "--nodes", "node2,node1", "--", "python", "allreduce.py", cwd=project, env=env)
    assert launched.returncode == 0, launched.stderr
    job_id = launched.stdout.splitlines()[0].strip()
    assert "rank 0/2 node node2 sum 3" in launched.stdout  # node2 is rank 0 although Slurm lists node1 first
    status = job_json(job_id, env=env)
    assert status["state"] == "SUCCEEDED" and status["master"].startswith("node2:")
    assert status["scheduler"]["name"] == "slurm" and status["scheduler"]["state"] == "COMPLETED"
    assert [(n["name"], n["rank"], n["state"], n["exit_code"]) for n in status["nodes"]] == [
        ("node2", 0, "SUCCEEDED", 0), ("node1", 1, "SUCCEEDED", 0)]
    merged = orch("logs", job_id, "--all", env=env, check=True).stdout.splitlines()
    assert "[node2|0] rank 0/2 node node2 sum 3" in merged and "[node1|1] rank 1/2 node node1 sum 3" in merged
    assert "rank 1/2" in orch("logs", job_id, "--node", "node1", env=env, check=True).stdout
    counted_status = wait_state(counted, {"SUCCEEDED", "FAILED", "STOPPED", "LOST"}, env, 90)
    assert counted_status["state"] == "SUCCEEDED", counted_status
    assert {n["name"] for n in counted_status["nodes"]} <= {"node1", "node2", "node3"}  # names learnt from Slurm
    assert not tagged(job_id) and not tagged(counted)


def test_a_job_waiting_for_busy_nodes_is_pending_with_slurms_reason_then_runs(project, env, slurm, timed_out):
    blocker = slurm.run("sbatch", "--parsable", "--exclusive", "-w", "node3", "--output=/dev/null", "--wrap",
                        "sleep 300").stdout.strip()
    try:
        job_id = launch(project, env, "--nodes", "node3", "--", "echo", "ran after the wait")
        status = wait_state(job_id, {"PENDING"}, env, timeout=10)
        assert status["state"] == "PENDING" and status["nodes"][0]["state"] == "PENDING", status
        assert status["scheduler"]["state"] == "PENDING" and status["scheduler"]["reason"] in ("Resources", "Priority")
        shown = orch("status", job_id, env=env, check=True).stdout
        assert "PENDING (Resources)" in shown or "PENDING (Priority)" in shown, shown  # Slurm re-evaluates the reason
        follower = subprocess.Popen([*orch_argv(), "logs", job_id, "--follow"], env={**os.environ, **env},
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        queued = launch(project, env, "--nodes", "node3", "--", "echo", "never runs")
        assert wait_state(queued, {"PENDING"}, env, timeout=10)["state"] == "PENDING"
        orch("stop", queued, env=env, check=True)  # a queued job is just cancelled
        cancelled = job_json(queued, env=env)
        assert cancelled["state"] == "STOPPED" and cancelled["scheduler"]["state"] == "CANCELLED"
        assert cancelled["nodes"][0]["state"] == "STOPPED" and cancelled["root_cause"] is None
    finally:
        slurm.run("scancel", blocker)
    out, err = follower.communicate(timeout=90)
    assert "is queued in Slurm" in err and "waiting for it to start" in err
    assert "ran after the wait" in out
    assert job_json(job_id, env=env)["state"] == "SUCCEEDED"


def orch_argv() -> list[str]:
    import sys

    return [sys.executable, "-m", "orchestrator"]


def test_stop_leaves_nothing_tagged_and_spares_the_neighbour(project, env, slurm, timed_out):
    victim = launch(project, env, "--nodes", "node1,node2", "--", "python", "escaper.py")
    neighbour = launch(project, env, "--nodes", "node1,node2", "--", "sleep", "600")
    deadline = time.monotonic() + 90
    # per node: torchrun, the worker, 2 DataLoader workers, the setsid child (re-parented to PID 1)
    while len(tagged(victim)) < 10 or "ready" not in orch("logs", victim, "--all", env=env).stdout:
        assert time.monotonic() < deadline, tagged(victim)
        time.sleep(0.5)
    # the setsid children were re-parented to their node's PID 1 (its slurmd): outside the job's process tree,
    # which is all that Slurm's proctrack/linuxproc follows
    escaped = [pid for pid in tagged(victim) if parent_name(pid) == "slurmd"]
    assert len(escaped) == 2, [(pid, parent_name(pid)) for pid in tagged(victim)]
    assert wait_state(neighbour, {"RUNNING"}, env)["state"] == "RUNNING"
    stopped = orch("stop", victim, env=env)
    assert stopped.returncode == 0, stopped.stderr
    status = job_json(victim, env=env)
    assert status["state"] == "STOPPED" and [n["state"] for n in status["nodes"]] == ["STOPPED", "STOPPED"]
    assert tagged(victim) == []
    assert len(tagged(neighbour)) >= 4 and job_json(neighbour, env=env)["state"] == "RUNNING"
    orch("stop", neighbour, env=env, check=True)
    assert tagged(neighbour) == []


def test_a_rank_exiting_3_fails_the_job_within_10_s_with_its_exit_code(project, env, slurm, timed_out):
    failed = orch("launch", "--nodes", "node1,node2", "--", "sh", "-c",
                  'if [ "$ORCH_NODE_RANK" = 1 ]; then sleep 1; exit 3; fi; sleep 300', cwd=project, env=env)
    assert failed.returncode == 1
    job_id = failed.stdout.splitlines()[0].strip()
    status = job_json(job_id, env=env)
    by_name = {n["name"]: n for n in status["nodes"]}
    assert status["state"] == "FAILED" and status["root_cause"].startswith("node node2 (node_rank 1) exited with "
                                                                           "exit code 3"), status
    assert by_name["node2"]["exit_code"] == 3 and by_name["node1"]["state"] == "STOPPED"
    assert status["ended"] - by_name["node2"]["ended"] < 10
    assert tagged(job_id) == []


def test_a_bad_partition_is_sbatchs_own_message_in_one_line(project, env, slurm, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(slurm.inventory.read_text().replace('partition = "debug"', 'partition = "nosuch"'))
    refused = orch("launch", "--cluster", str(bad), "--nodes", "node1", "--", "python", "allreduce.py", cwd=project,
                   env=env)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "Invalid partition name specified" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    listed = orch("status", "--json", env=env, check=True).stdout
    assert '"RUNNING"' not in listed and '"PENDING"' not in listed


def test_doctor_checks_the_shared_python_and_slurms_nodes_and_runs_the_smoke_test(env, slurm):
    report = json.loads(orch("doctor", "--nodes", "node1,node2", "--smoke", "--json", env=env, check=True).stdout)
    assert report["hard"] == [] and report["login"]["versions"]["torch"] and report["smoke"] == "SUCCEEDED"
    assert {n["name"] for n in report["slurm_nodes"]} == {"node1", "node2", "node3", "node4"}
    slurm.run("scontrol", "update", "NodeName=node3", "State=DRAIN", "Reason=maintenance")
    try:
        warned = json.loads(orch("doctor", "--json", env=env, check=True).stdout)
        assert any(line.startswith("node3: drain") and "(maintenance)" in line for line in warned["soft"]), warned
        refused = orch("doctor", "--nodes", "node3", env=env)
        assert refused.returncode == 2 and "node3: drain" in refused.stderr and "(maintenance)" in refused.stderr
        assert "slurm nodes" in refused.stdout and "node3" in refused.stdout
    finally:
        slurm.run("scontrol", "update", "NodeName=node3", "State=RESUME")


def test_a_quiet_job_gets_every_ranks_stacks_and_fails(project, env, slurm, timed_out):
    launched = orch("launch", "--nodes", "node1,node2", "--hang-timeout", "5", "--env", "STEADY_S=120", "--env",
                    "QUIET_AFTER_S=1", "--", "python", "steady.py", cwd=project, env=env, timeout=120)
    job_id = launched.stdout.splitlines()[0].strip()
    status = job_json(job_id, env=env)
    assert status["state"] == "FAILED" and status["root_cause"].startswith("hang: no log output from any rank for 5 s")
    report = Path(status["root_cause"].rsplit("stacks: ", 1)[1]).read_text()
    # from an `srun --overlap` step on each node: both workers' own stacks, at steady.py's sleeping line
    assert report.count('steady.py", line') >= 2 and "most recent call first" in report, report
    assert tagged(job_id) == []


def test_restart_without_a_node_resubmits_excluding_it(project, env, slurm, timed_out):
    first = launch(project, env, "--nodes", "2", "--env", "FAIL_ATTEMPTS=1", "--", "python", "steady.py")
    failed = wait_state(first, {"SUCCEEDED", "FAILED", "STOPPED", "LOST"}, env, 90)
    assert failed["state"] == "FAILED" and "exit code 5" in failed["root_cause"], failed
    dropped = failed["nodes"][1]["name"]
    restarted = orch("restart", first, "--exclude-node", dropped, "--detach", env=env)
    assert restarted.returncode == 0, restarted.stderr
    second = wait_state(restarted.stdout.strip().splitlines()[-1], {"SUCCEEDED", "FAILED", "STOPPED", "LOST"}, env, 90)
    assert second["state"] == "SUCCEEDED", second
    assert len(second["nodes"]) == 2 and dropped not in {n["name"] for n in second["nodes"]}  # Slurm chose others
    assert f"--exclude={dropped}" in (Path(second["run_dir"]) / "sbatch.sh").read_text()


def test_a_login_host_runs_the_slurm_commands_over_ssh(project, slurm, orch_home, tmp_path):
    host, ssh_config = slurm.start_login()
    inventory = tmp_path / "login.toml"
    inventory.write_text(slurm.inventory.read_text().replace(
        "[cluster.env]", f'ssh_config = "{ssh_config}"\n\n[cluster.env]').replace(
        'partition = "debug"', f'partition = "debug"\nlogin = "{host}"'))
    # this machine has no SLURM_CONF: sbatch, squeue and scancel only work on the login host
    env = {"ORCH_CLUSTER": str(inventory), "ORCH_HOME": str(orch_home), "SLURM_CONF": "/nonexistent"}
    done = orch("launch", "--nodes", "node1,node2", "--", "python", "allreduce.py", cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.splitlines()[0].strip()
    assert job_json(job_id, env=env)["state"] == "SUCCEEDED"
    assert "[node2|1] rank 1/2 node node2 sum 3" in orch("logs", job_id, "--all", env=env, check=True).stdout
    running = launch(project, env, "--nodes", "node1", "--", "sleep", "600")
    assert wait_state(running, {"RUNNING"}, env)["state"] == "RUNNING"
    orch("stop", running, env=env, check=True)
    assert job_json(running, env=env)["state"] == "STOPPED" and tagged(running) == []


def test_a_time_limit_ends_as_a_timeout_root_cause(timed_out):
    job_id, env = timed_out
    status = wait_state(job_id, {"SUCCEEDED", "FAILED", "STOPPED", "LOST"}, env, timeout=150)
    assert status["state"] == "FAILED", status
    assert status["scheduler"]["state"] == "TIMEOUT"
    assert "reached its time limit (TIMEOUT)" in status["root_cause"]
    assert status["nodes"][0]["state"] == "STOPPED"
    # Slurm reports TIMEOUT as it signals the tasks; their sweep (and Slurm's KillWait of 5 s) ends the rest
    deadline = time.monotonic() + 15
    while tagged(job_id):
        assert time.monotonic() < deadline, tagged(job_id)
        time.sleep(0.5)


@pytest.mark.slow
def test_lora_with_the_built_in_worker_resumes_after_a_crash_by_resubmitting(slurm, orch_home, tmp_path):
    """The same job.yaml as on SSH, only the inventory differs: 2 nodes LoRA, rank 0 killed right after writing
    checkpoint 10 on the first attempt; `--max-restarts 1` resubmits and training resumes from checkpoint 5."""
    from orchestrator.demo import build_project
    from tests.test_train_cluster import CONFIG, losses

    project = tmp_path / "llm"
    build_project(project, epochs=1)
    (project / ".gitignore").write_text("base/\ndata/\nmerged/\nout/\n")
    (project / "job.yaml").write_text(CONFIG.format(batch=2).replace("max_steps: 20", "max_steps: 10")
                                      .replace("save_steps: 10", "save_steps: 5"))
    env = {"ORCH_CLUSTER": str(slurm.inventory), "ORCH_HOME": str(orch_home), **slurm.env}
    launched = orch("launch", "--nodes", "node1,node2", "--nproc-per-node", "1", "--max-restarts", "1",
                    "--env", "ORCH_FAILPOINT=checkpoint-save:10", "job.yaml", cwd=project, env=env, timeout=600)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-2000:]
    first = launched.stdout.splitlines()[0].strip()
    attempt0 = job_json(first, env=env)
    assert attempt0["state"] == "FAILED" and attempt0["restarted_as"], attempt0
    attempt1 = job_json(attempt0["restarted_as"], env=env)
    assert attempt1["state"] == "SUCCEEDED" and [n["exit_code"] for n in attempt1["nodes"]] == [0, 0]
    assert attempt1["scheduler"]["job_id"] != attempt0["scheduler"]["job_id"]  # a new Slurm job
    assert "world size: 2; effective global batch: 4" in launched.stdout
    out = slurm.workdir / "outputs" / "llm" / "out" / "lora"
    assert (out / "adapter_model.safetensors").exists()
    # the half-written checkpoint-10 of the first attempt was skipped: training resumed from step 5
    assert "skipped incomplete checkpoint(s) checkpoint-10" in launched.stdout
    assert "resuming from" in launched.stdout and "checkpoint-5" in launched.stdout
    state = out / "checkpoint-10" / "trainer_state.json"
    assert json.loads(state.read_text())["global_step"] == 10 and len(losses(state)) == 2
    # the metric feed came home through Slurm's probe as through SSH's: each attempt's logged steps (the first
    # logged step 10 before its save was killed), both ranks
    for attempt, steps in ((attempt0, [5, 10]), (attempt1, [10])):
        run_dir = Path(attempt["run_dir"])
        feed = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert [line["step"] for line in feed if "loss" in line] == steps, feed
    timing = json.loads((Path(attempt1["run_dir"]) / "timing.json").read_text())["ranks"]
    assert sorted(t["node"] for t in timing.values()) == ["node1", "node2"], timing


def kill_supervisor(job_id: str) -> None:
    """End the detached watcher of a job, so that only the test's own processes act on it."""
    for proc in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if f"_supervise\0{job_id}".encode() in proc.read_bytes():
                os.kill(int(proc.parent.name), 9)
        except OSError:
            continue


def on_node(pids: list[int], node: str) -> list[int]:
    """Those of `pids` that run on Slurm node `node` (the task exports ORCH_NODE to the rank's processes)."""
    found = []
    for pid in pids:
        try:
            if f"ORCH_NODE={node}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(pid)
        except OSError:
            continue
    return found


def test_a_training_jobs_progress_shows_in_status_on_slurm(project, env, slurm):
    """Rank 0's progress.json (what the training worker writes) reaches `orch status` and its --json."""
    progress = '{"step": 3, "total": 10, "epoch": 0.3, "loss": 2.5}'
    job_id = launch(project, env, "--nodes", "node1,node2", "--", "sh", "-c",
                    f"[ \"$ORCH_NODE_RANK\" = 0 ] && echo '{progress}' > \"$ORCH_JOB_DIR/progress.json\"; sleep 300")
    deadline = time.monotonic() + 60
    while not (status := job_json(job_id, env=env))["progress"]:
        assert time.monotonic() < deadline, status
        time.sleep(0.5)
    assert status["progress"] == json.loads(progress) and status["state"] == "RUNNING"
    assert "progress: step 3/10 (30%), epoch 0.3, loss 2.500" in orch("status", job_id, env=env, check=True).stdout
    orch("stop", job_id, env=env, check=True)


def test_a_launcher_killed_between_sbatch_and_recording_the_slurm_id_leaves_no_orphan(project, env, slurm):
    """The job names its scheduler from the moment it is recorded: the launcher died after sbatch, before the
    Slurm id was written, and the next look finds the queued Slurm job by name and cancels it."""
    blocker = slurm.run("sbatch", "--parsable", "--exclusive", "-w", "node3", "--output=/dev/null", "--wrap",
                        "sleep 300").stdout.strip()
    try:
        def orch_jobs() -> set[str]:
            return {name for name in slurm.run("squeue", "-h", "-t", "all", "-o", "%j").stdout.split()
                    if name.startswith("orch-")}

        before = orch_jobs()
        launcher = subprocess.Popen([*orch_argv(), "launch", "--detach", "--nodes", "node3", "--", "echo", "never"],
                                    cwd=project, env={**os.environ, **env, "ORCH_FAILPOINT": "after-submit:60"},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not (submitted := orch_jobs() - before):
            assert time.monotonic() < deadline and launcher.poll() is None
            time.sleep(0.2)
        launcher.kill()
        launcher.wait()
        job_id = submitted.pop()[len("orch-"):]
        status = job_json(job_id, env=env)
        assert status["scheduler"]["name"] == "slurm" and status["state"] == "FAILED", status
        assert status["root_cause"].startswith("launch interrupted: the `orch launch` process died"), status
        assert slurm.run("squeue", "-h", "-t", "PENDING,RUNNING", "-n", f"orch-{job_id}").stdout.strip() == ""
    finally:
        slurm.run("scancel", blocker)


def test_stopping_some_ranks_on_slurm_stops_only_those(project, env, slurm, monkeypatch):
    """What fail-fast and a failed launch ask for: the named ranks stop, at once; the others and the Slurm job
    keep running."""
    from orchestrator.cluster.ssh import Session
    from orchestrator.jobs import watch
    from orchestrator.jobs.store import Store

    job_id = launch(project, env, "--nodes", "node1,node2", "--", "sleep", "600")
    assert wait_state(job_id, {"RUNNING"}, env)["state"] == "RUNNING"
    deadline = time.monotonic() + 30
    while not (on_node(tagged(job_id), "node1") and on_node(tagged(job_id), "node2")):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    store = Store()
    job = store.get(job_id)
    started = time.monotonic()
    with Session(job.ssh_config) as session:
        left = watch.stop_nodes(session, job, [job.nodes[1]])
    assert left == {"node2": 0} and time.monotonic() - started < 20
    assert on_node(tagged(job_id), "node2") == [] and on_node(tagged(job_id), "node1")
    status = job_json(job_id, env=env)
    assert status["state"] == "RUNNING" and [n["state"] for n in status["nodes"]] == ["RUNNING", "STOPPED"], status
    assert status["scheduler"]["state"] == "RUNNING"
    orch("stop", job_id, env=env, check=True)
    assert job_json(job_id, env=env)["state"] == "STOPPED" and tagged(job_id) == []


def test_a_hang_report_landing_during_a_status_look_leaves_the_job_failed(project, env, slurm, monkeypatch,
                                                                          tmp_path):
    """One order for every scheduler: the store's flags are read after the ranks are observed. A hang report
    (failure noted, then every rank stopped) that lands while `orch status` is looking must not be recorded as a
    plain STOPPED."""
    from orchestrator.cluster.ssh import Session
    from orchestrator.jobs import watch
    from orchestrator.jobs.store import Store

    job_id = launch(project, env, "--nodes", "node1", "--", "sleep", "600")
    assert wait_state(job_id, {"RUNNING"}, env)["state"] == "RUNNING"
    kill_supervisor(job_id)
    gate = tmp_path / "observe"
    looking = subprocess.Popen([*orch_argv(), "status", job_id], env={**os.environ, **env,
                                                                       "ORCH_FAILPOINT": f"before-observe:@{gate}"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not Path(f"{gate}.waiting").exists():  # it has read the job and stands just before observing it
        assert time.monotonic() < deadline and looking.poll() is None
        time.sleep(0.05)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    store = Store()
    job = store.get(job_id)
    store.set_option(job, "failure", "hang: reported by the test")  # what the supervisor's hang check does
    with Session(job.ssh_config) as session:
        watch.stop_nodes(session, job)  # returns once Slurm has ended the job and its tasks have swept
    gate.touch()  # now it looks: every rank stopped
    assert looking.wait(timeout=60) == 0, looking.stderr.read()
    status = job_json(job_id, env=env)
    assert status["state"] == "FAILED" and status["root_cause"] == "hang: reported by the test", status
    assert tagged(job_id) == []


def test_a_job_that_ended_unwatched_keeps_its_result_after_slurm_forgets_it(project, env, slurm):
    """Last in the module: it restarts slurmctld with a cleared state (as MinJobAge leaves an ended job)."""
    job_id = launch(project, env, "--nodes", "node1,node2", "--", "sh", "-c", "sleep 3; echo finished")
    kill_supervisor(job_id)  # nobody watches
    slurm_id = job_json(job_id, env=env)["scheduler"]["job_id"]
    deadline = time.monotonic() + 60
    while slurm.run("squeue", "-h", "-j", slurm_id, "-o", "%T").stdout.strip() not in ("", "COMPLETED"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    slurm.forget_jobs()
    assert "Invalid job id" in slurm.run("squeue", "-j", slurm_id).stderr
    status = job_json(job_id, env=env)
    assert status["state"] == "SUCCEEDED", status
    assert [(n["name"], n["state"], n["exit_code"]) for n in status["nodes"]] == [
        ("node1", "SUCCEEDED", 0), ("node2", "SUCCEEDED", 0)]
    assert "finished" in orch("logs", job_id, "--all", env=env, check=True).stdout
    assert job_json(job_id, env=env)["state"] == "SUCCEEDED"  # and it stays so
