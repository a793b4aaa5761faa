"""Notifications on the namespace test cluster: the notify command runs on the controller with the job's JSON
on stdin when the job ends (`--notify CMD`) and when it fails (`[cluster] notify` in the inventory)."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

from tests.orch_cli import job_id_of, orch

PROJECT_SCRIPTS = ("steady.py",)  # copied into the `project` fixture (tests/conftest.py)


def received(path: Path, count: int, timeout: float = 120) -> list[dict]:
    """The JSON documents the notify command appended, once there are `count`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return [json.loads(line) for line in lines]
        time.sleep(0.5)
    raise AssertionError(f"notify ran {len(lines)} time(s), expected {count}")


def test_notify_gets_the_jobs_json_when_it_ends_and_when_it_fails(project, env, cluster, tmp_path):
    ended = tmp_path / "ended.jsonl"
    launched = orch("launch", "--detach", "--nodes", "node0,node1", "--notify", f"cat >> {shlex.quote(str(ended))}",
                    "--", "python", "steady.py", cwd=project, env={**env, "STEADY_S": "1"}, check=True)
    job_id = job_id_of(launched)
    [event] = received(ended, 1)
    assert event["id"] == job_id and event["event"] == "ended" and event["state"] == "SUCCEEDED"
    assert [n["name"] for n in event["nodes"]] == ["node0", "node1"] and "stragglers" in event

    failed = tmp_path / "failed.jsonl"
    inventory = tmp_path / "cluster.toml"
    text = Path(env["ORCH_CLUSTER"]).read_text()
    inventory.write_text(text.replace("[cluster]", f"[cluster]\nnotify = {json.dumps('cat >> ' + str(failed))}", 1))
    launched = orch("launch", "--detach", "--cluster", str(inventory), "--nodes", "node0,node1", "--env",
                    "FAIL_ATTEMPTS=1", "--", "python", "steady.py", cwd=project, env=env, check=True)
    job_id = job_id_of(launched)
    [event] = received(failed, 1)
    assert event["id"] == job_id and event["event"] == "failed" and event["state"] == "FAILED"
    assert "exited with exit code 5" in event["root_cause"]
