"""Run the real `orch` CLI in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def orch(*args: str, cwd: Path | str | None = None, env: dict | None = None, timeout: float = 300,
         check: bool = False) -> subprocess.CompletedProcess:
    """`orch ARGS...` with the caller's ORCH_HOME/ORCH_CLUSTER; returns the completed process (text)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"orch {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def job_json(job_id: str, **kwargs) -> dict:
    """`orch status JOB --json`, parsed."""
    return json.loads(orch("status", job_id, "--json", check=True, **kwargs).stdout)


FIXTURES = Path(__file__).parent / "jobs_fixtures"


def make_project(tmp_path: Path, *scripts: str) -> Path:
    """A user's project folder holding copies of the named test job scripts."""
    import shutil

    folder = tmp_path / "project"
    folder.mkdir()
    for script in scripts:
        shutil.copy(FIXTURES / script, folder / script)
    return folder

