"""`orch launch --detach` returns once every node runs: the run folder, the project's git state and the watcher's
start happen after, in the watcher, and none of it is lost."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from orchestrator.jobs.store import Store
from tests.orch_cli import job_json, orch


def supervisors(job_id: str) -> list[int]:
    found = []
    for proc in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if f"_supervise\0{job_id}".encode() in proc.read_bytes():
                found.append(int(proc.parent.name))
        except OSError:
            continue
    return found


def test_a_detached_launch_keeps_its_run_folder_and_git_state_after_returning(tmp_path: Path, orch_home: Path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "sleeper.py").write_text("import time\nprint('up', flush=True)\ntime.sleep(120)\n")
    git = ["git", "-C", str(project), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    (project / "sleeper.py").write_text("import time\nprint('up, edited', flush=True)\ntime.sleep(120)\n")
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout
    # the embedded localhost default; `orch` captures output: it returns only once nothing holds the command's
    # stdout/stderr (the watcher let go of them)
    launched = orch("launch", "--detach", "--nproc-per-node", "1", "--", "python", "sleeper.py", cwd=project,
                    env={"ORCH_HOME": str(orch_home), "ORCH_CLUSTER": ""})
    assert launched.returncode == 0, launched.stderr
    job_id = launched.stdout.split()[-1]
    assert job_json(job_id, env={"ORCH_HOME": str(orch_home), "ORCH_CLUSTER": ""})["state"] == "RUNNING"  # on return
    run_dir = Path(Store().get(job_id).run_dir)
    deadline = time.monotonic() + 30
    while not (run_dir / "sync.json").exists() or not supervisors(job_id):
        assert time.monotonic() < deadline, sorted(run_dir.rglob("*"))
        time.sleep(0.1)
    assert (run_dir / "git-commit.txt").read_text() == commit
    assert "up, edited" in (run_dir / "git-diff.patch").read_text()
    node = run_dir / "nodes" / "0-localhost"
    assert "sleeper.py" in (node / "launch.sh").read_text() and (node / "stop.sh").exists()
    assert (run_dir / "supervisor.log").stat().st_mode & 0o777 == 0o600
    orch("stop", job_id, env={"ORCH_HOME": str(orch_home), "ORCH_CLUSTER": ""}, check=True)
    deadline = time.monotonic() + 30
    while supervisors(job_id):  # the watcher ends with the job
        assert time.monotonic() < deadline
        time.sleep(0.2)
