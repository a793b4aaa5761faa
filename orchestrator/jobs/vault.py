"""Secret env values kept out of the job database.

A job's record holds env tables twice: the launch request's (`--env`) and each node's (the inventory's
`[cluster.env]` and per-node `env`). The value of every secret-named variable (`render.is_secret`: `*KEY*`,
`*TOKEN*`, `*SECRET*`, `*PASSWORD*`, ...) is replaced there by `***` and kept in `$ORCH_HOME/secrets/<job id>.json`
(mode 600, folder 700). Only a relaunch (`orch restart`, `--max-restarts`) reads them back (`relaunch_request`);
a job read for a look (status, a watcher's poll) keeps the `***`."""

from __future__ import annotations

import json
import os
from pathlib import Path

from orchestrator.errors import JobError
from orchestrator.jobs.render import MASK, is_secret

FOLDER = "secrets"


def split_env(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(env with secret values masked, the secret values by name)."""
    hidden = {name: value for name, value in env.items() if is_secret(name)}
    return {name: (MASK if name in hidden else value) for name, value in env.items()}, hidden


def seal(home: Path, job_id: str, options: dict, node_envs: dict[int, dict[str, str]]
         ) -> tuple[dict, dict[int, dict[str, str]]]:
    """`options` and the nodes' env tables (by rank) as the database may hold them; their secret values are
    written to the job's secrets file first (nothing is written when there are none)."""
    kept: dict = {}
    request = options.get("request")
    if isinstance(request, dict) and request.get("env"):
        shown, kept["request"] = split_env(request["env"])
        options = {**options, "request": {**request, "env": shown}}
    shown_nodes = {}
    for rank, env in node_envs.items():
        shown_nodes[rank], hidden = split_env(env)
        if hidden:
            kept.setdefault("nodes", {})[str(rank)] = hidden
    if kept.get("request") or kept.get("nodes"):
        write_private(path_of(home, job_id), json.dumps(kept))
    return options, shown_nodes


def secrets_of(home: Path, job_id: str) -> dict:
    """What `seal` kept for the job (empty when it had no secrets, or was recorded before secrets moved here)."""
    try:
        return json.loads(path_of(home, job_id).read_text())
    except FileNotFoundError:
        return {}


def path_of(home: Path, job_id: str) -> Path:
    return home / FOLDER / f"{job_id}.json"


def relaunch_request(home: Path, job_id: str, options: dict, given: dict[str, str]) -> dict:
    """The job's launch request with its secret env values read back, `given` (`orch restart --env`) over them.
    JobError, naming the variables and the file, when a value is gone (its secrets file was deleted)."""
    request = options["request"]
    try:
        kept = secrets_of(home, job_id).get("request", {})
    except ValueError:  # a mangled file: as good as gone
        kept = {}
    env = request.get("env", {})
    missing = [name for name, value in env.items() if value == MASK and name not in kept and name not in given]
    if missing:
        again = " ".join(f"--env {name}=..." for name in missing)
        raise JobError(f"job {job_id}: the value of {', '.join(missing)} is gone ({path_of(home, job_id)} is missing"
                       f" or unreadable); nothing relaunched: give it again with `orch restart {job_id} {again}`")
    return {**request, "env": {**env, **kept, **given}}


def write_private(path: Path, text: str) -> None:
    """Write `path` whole (a temporary file renamed over it), mode 600, its folder 700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(partial, path)
