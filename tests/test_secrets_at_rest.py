"""Secrets at rest on the controller: $ORCH_HOME is 700, everything orch writes there (the job database, run folders,
the local node's job folders and code) is 600/700, and a secret env value (from `--env` or the inventory) is in no
file but the job's secrets file and the node's own env.sh, also not on screen; a restart still runs with it, and
refuses (naming the variable, the file and the fix) when that file is gone."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import sys
import time
from pathlib import Path

from orchestrator.jobs.schedulers.base import LaunchRequest
from orchestrator.jobs.store import JobRecord, Store
from orchestrator.jobs.supervise import supervise
from tests.orch_cli import job_id_of, orch

FROM_ENV = "hf_s3cr3t_from_env_91"  # --env HF_TOKEN=...
FROM_INVENTORY = "db_pa55_from_toml_37"  # [cluster.env] DB_PASSWORD = ...
SCRIPT = ("import os\n"
          "print('token', len(os.environ['HF_TOKEN']), 'password', len(os.environ['DB_PASSWORD']), flush=True)\n")


def _setup(tmp_path: Path, orch_home: Path) -> tuple[Path, dict]:
    project = tmp_path / "project"
    project.mkdir()
    (project / "show.py").write_text(SCRIPT)
    inventory = tmp_path / "cluster.toml"
    inventory.write_text(f'[cluster]\nworkdir = "{orch_home}/work"\npython = "{sys.executable}"\n'
                         f'[cluster.env]\nDB_PASSWORD = "{FROM_INVENTORY}"\nNCCL_DEBUG = "WARN"\n'
                         '[[nodes]]\nname = "localhost"\n')
    return project, {"ORCH_HOME": str(orch_home), "ORCH_CLUSTER": str(inventory)}


def _recorded(store: Store, project: Path, state: str, **request: object) -> JobRecord:
    """A job recorded as `orch launch --env HF_TOKEN=...` records it, without running anything."""
    launched = LaunchRequest(command=["python", "show.py"], env={"HF_TOKEN": FROM_ENV}, project_dir=project, **request)
    job = JobRecord(id="20260101-000000-abcd", created=time.time(), state=state, command=launched.command,
                    master="localhost", nproc_per_node=1, ssh_config=None, run_dir=str(store.run_dir("x")), nodes=[],
                    options={"request": launched.to_json(), "inventory": "<embedded>"})
    store.add(job)
    return job


def _wait_final(job_id: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while (state := Store().get(job_id).state) not in ("SUCCEEDED", "FAILED", "STOPPED", "LOST"):
        assert time.monotonic() < deadline, f"job {job_id} still {state}"
        time.sleep(0.3)
    return state


def _files_holding(root: Path, *values: str) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*")
            if path.is_file() and any(v.encode() in path.read_bytes() for v in values)}


def test_secrets_stay_out_of_the_database_and_every_file_is_private(tmp_path, orch_home):
    project, env = _setup(tmp_path, orch_home)
    shown = orch("launch", "--dry-run", "--env", f"HF_TOKEN={FROM_ENV}", "--", "python", "show.py", cwd=project,
                 env=env, check=True)
    assert "HF_TOKEN=***" in shown.stdout and "DB_PASSWORD=***" in shown.stdout
    assert FROM_ENV not in shown.stdout + shown.stderr and FROM_INVENTORY not in shown.stdout + shown.stderr

    first = job_id_of(orch("launch", "--detach", "--env", f"HF_TOKEN={FROM_ENV}", "--", "python", "show.py",
                           cwd=project, env=env, check=True))
    assert _wait_final(first) == "SUCCEEDED"
    # a restart reads the secrets back: the relaunched job runs with both values
    second = orch("restart", first, "--detach", env=env, check=True).stdout.split()[-1]
    assert second != first and _wait_final(second) == "SUCCEEDED"
    logs = orch("logs", second, env=env, check=True).stdout
    assert f"token {len(FROM_ENV)} password {len(FROM_INVENTORY)}" in logs
    orch("status", second, env=env, check=True)  # a look that writes (logs kept) runs before the checks too

    # its secrets file deleted: a restart refuses in one line, launching nothing, until the value is given again
    (orch_home / "secrets" / f"{second}.json").unlink()
    refused = orch("restart", second, "--detach", env=env)
    assert refused.returncode == 2 and refused.stdout == "", refused.stdout + refused.stderr
    assert refused.stderr.strip() == (
        f"orch: error: job {second}: the value of HF_TOKEN is gone ({orch_home}/secrets/{second}.json is missing or"
        f" unreadable); nothing relaunched: give it again with `orch restart {second} --env HF_TOKEN=...`")
    assert len(Store().recent()) == 2
    third = orch("restart", second, "--detach", "--env", f"HF_TOKEN={FROM_ENV}", env=env, check=True).stdout.split()[-1]
    assert _wait_final(third) == "SUCCEEDED"
    assert f"token {len(FROM_ENV)} password" in orch("logs", third, env=env, check=True).stdout

    assert stat.S_IMODE(orch_home.stat().st_mode) == 0o700
    loose = [f"{oct(stat.S_IMODE(p.lstat().st_mode))} {p.relative_to(orch_home)}" for p in orch_home.rglob("*")
             if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) & 0o077]
    assert loose == [], "readable by others under $ORCH_HOME:\n" + "\n".join(loose)
    held = _files_holding(orch_home, FROM_ENV, FROM_INVENTORY)
    assert held == {f"secrets/{first}.json", f"secrets/{third}.json",  # the designated secrets files
                    *(f"work/jobs/{job}/env.sh" for job in (first, second, third))}  # the node's env (the local node)
    for job in (first, second, third):
        assert (orch_home / "runs" / job / "nodes").is_dir()  # the run folder was searched above
    rows = sqlite3.connect(orch_home / "jobs.db").execute("SELECT options FROM jobs").fetchall()
    assert rows and all('"HF_TOKEN": "***"' in options for (options,) in rows)


def test_an_older_state_folder_and_database_are_made_private(tmp_path, orch_home):
    """What an older orch left: a 755 folder, a 644 database with a job's secrets in it."""
    project, env = _setup(tmp_path, orch_home)
    job = job_id_of(orch("launch", "--detach", "--env", f"HF_TOKEN={FROM_ENV}", "--", "python", "show.py",
                         cwd=project, env=env, check=True))
    _wait_final(job)
    kept = orch_home / "secrets" / f"{job}.json"
    with sqlite3.connect(orch_home / "jobs.db") as db:  # as an older orch recorded it: the values in plain text
        options = db.execute("SELECT options FROM jobs WHERE id=?", (job,)).fetchone()[0]
        node = db.execute("SELECT node FROM job_nodes WHERE job_id=?", (job,)).fetchone()[0]
        db.execute("UPDATE jobs SET options=?", (options.replace('"***"', f'"{FROM_ENV}"'),))
        db.execute("UPDATE job_nodes SET node=?", (node.replace('"***"', f'"{FROM_INVENTORY}"'),))
        db.execute("PRAGMA user_version = 0")
    kept.unlink()
    os.chmod(orch_home, 0o755)
    os.chmod(orch_home / "jobs.db", 0o644)
    assert FROM_ENV.encode() in (orch_home / "jobs.db").read_bytes()

    orch("status", env=env, check=True)
    assert stat.S_IMODE(orch_home.stat().st_mode) == 0o700
    assert stat.S_IMODE((orch_home / "jobs.db").stat().st_mode) == 0o600
    data = (orch_home / "jobs.db").read_bytes()
    assert FROM_ENV.encode() not in data and FROM_INVENTORY.encode() not in data  # freed pages overwritten too
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert json.loads(kept.read_text()) == {"request": {"HF_TOKEN": FROM_ENV},
                                            "nodes": {"0": {"DB_PASSWORD": FROM_INVENTORY}}}
    assert Store().relaunch_request(Store().get(job), {})["env"]["HF_TOKEN"] == FROM_ENV


def test_an_automatic_restart_without_its_secret_says_so_and_launches_nothing(tmp_path, orch_home):
    """`--max-restarts`: the supervisor, finding a failed job's secrets file gone, says why in one line and stops."""
    store = Store()
    job = _recorded(store, tmp_path, "FAILED", max_restarts=2)
    (orch_home / "secrets" / f"{job.id}.json").unlink()
    said: list[str] = []
    last = supervise(store, store.get(job.id), follow=lambda *_: None, say=said.append)
    assert last.id == job.id and [j.id for j in Store().recent()] == [job.id]
    assert said[-1] == (f"orch: not restarted: job {job.id}: the value of HF_TOKEN is gone ({orch_home}/secrets/"
                        f"{job.id}.json is missing or unreadable); nothing relaunched: give it again with"
                        f" `orch restart {job.id} --env HF_TOKEN=...`")


def test_a_look_at_a_job_leaves_its_secrets_file_unread(tmp_path, orch_home):
    """A watcher's poll (`flags`), `status` (`get`, `recent`) and an option's write read the job database only;
    the secrets file is opened by a relaunch alone."""
    store = Store()
    job = _recorded(store, tmp_path, "RUNNING")
    kept = str(orch_home / "secrets" / f"{job.id}.json")
    opened: list[str] = []
    sys.addaudithook(lambda event, args: opened.append(event) if event == "open" and str(args[0]) == kept else None)
    looked = store.get(job.id)
    store.flags(job.id), store.recent(), store.active(), store.set_option(looked, "progress", {"step": 1})
    assert opened == [] and looked.options["request"]["env"]["HF_TOKEN"] == "***"
    assert store.relaunch_request(looked, {})["env"]["HF_TOKEN"] == FROM_ENV and opened == ["open"]
