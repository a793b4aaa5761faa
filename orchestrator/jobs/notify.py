"""Notifications: the user's command (`--notify CMD` or `[cluster] notify`), run on the controller with the job's
JSON on stdin when the job ends, fails, hangs or restarts. A Slack webhook is one `curl` line:

    notify = "curl -sS -X POST -H 'Content-Type: application/json' --data-binary @- $SLACK_WEBHOOK"

(Slack wants `{"text": ...}`: pipe through `jq '{text: "\\(.id) \\(.event) \\(.state)"}'` first.)
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Callable

from orchestrator.jobs.states import FAILED, LOST
from orchestrator.jobs.store import JobRecord
from orchestrator.jobs.stragglers import of_run

EVENTS = ("ended", "failed", "hang", "restart")
TIMEOUT_S = 60


def event_of_end(job: JobRecord) -> str:
    """`failed` for a FAILED or LOST job, else `ended`."""
    return "failed" if job.state in (FAILED, LOST) else "ended"


def payload(job: JobRecord, event: str, detail: str | None = None) -> dict:
    """`orch status --json`'s shape plus the event (and what it is about: a hang report, the restart's id)."""
    return {**job.to_json(), "stragglers": of_run(job.run_dir), "event": event, "detail": detail}


def notify(job: JobRecord, event: str, detail: str | None = None, say: Callable[[str], None] = print) -> None:
    """Run the job's notify command, if it has one; a failing command is reported, never raised."""
    command = (job.options.get("request") or {}).get("notify")
    if not command:
        return
    env = {**os.environ, "ORCH_NOTIFY_JOB": job.id, "ORCH_EVENT": event, "ORCH_STATE": job.state}
    try:
        proc = subprocess.run(command, shell=True, input=json.dumps(payload(job, event, detail)) + "\n", text=True,
                              capture_output=True, timeout=TIMEOUT_S, env=env, cwd=job.run_dir)
    except (OSError, subprocess.TimeoutExpired) as exc:
        say(f"orch: job {job.id}: notify command for {event} did not finish: {exc}")
        return
    if proc.returncode != 0:
        say(f"orch: job {job.id}: notify command for {event} exited {proc.returncode}: "
            f"{(proc.stderr or proc.stdout).strip()[-300:]}")
