"""Stop and restart from the page: the very `orch stop` / `orch restart` commands, run as the CLI runs them."""

from __future__ import annotations

import os
import subprocess
import sys

from orchestrator.errors import OrchError


def _orch(*args: str, timeout: float = 300) -> dict:
    proc = subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy(), stdin=subprocess.DEVNULL)
    output = (proc.stdout + proc.stderr).strip()
    return {"ok": proc.returncode == 0, "exit_code": proc.returncode, "output": output}


def stop(job_id: str) -> dict:
    return _orch("stop", job_id)


def restart(job_id: str, exclude: str | None = None) -> dict:
    """Relaunch (without node `exclude` when given); `job` is the new job's id."""
    if exclude is not None and not isinstance(exclude, str):
        raise OrchError("exclude: a node name")
    result = _orch("restart", job_id, "--detach", *(["--exclude-node", exclude] if exclude else []))
    lines = result["output"].splitlines()
    result["job"] = lines[-1].strip() if result["ok"] and lines else None
    return result
