"""Run the real `orch` CLI in a subprocess, as a user would."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
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


JOB_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4}$")


def job_id_of(proc: subprocess.CompletedProcess) -> str:
    """The job id `orch launch` printed: the first line when attached, the last with --detach."""
    ids = [line.strip() for line in proc.stdout.splitlines() if JOB_ID.match(line.strip())]
    assert ids, f"no job id in: {proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return ids[0]


def job_json(job_id: str, **kwargs) -> dict:
    """`orch status JOB --json`, parsed."""
    return json.loads(orch("status", job_id, "--json", check=True, **kwargs).stdout)


def lose_last_node(project: Path, env: dict, nodes: str, config: str, dumps: Path | None = None) -> dict:
    """`orch launch CONFIG` on `nodes` (one process each) whose last node is killed right after writing
    checkpoint-4 (`ORCH_FAILPOINT=checkpoint-save:4:NODE`), the gathered states dumped into `dumps` when given;
    returns the job's JSON, asserted FAILED with that node as its root cause."""
    node = nodes.split(",")[-1]
    dump = ["--env", f"ORCH_DUMP_STATE={dumps}"] if dumps else []
    first = orch("launch", "--nodes", nodes, "--nproc-per-node", "1", "--env",
                 f"ORCH_FAILPOINT=checkpoint-save:4:{node}", *dump, config, cwd=project, env=env, timeout=600)
    lost = job_json(job_id_of(first), env=env)
    assert lost["state"] == "FAILED" and f"node {node}" in lost["root_cause"], lost
    return lost


def demo_project(folder: Path) -> Path:
    """`folder` made into the demo's LLM project (a tiny random base model, chat data, demo.yaml); returns it."""
    from orchestrator.demo import build_project

    build_project(folder, epochs=1)
    return folder


def assert_refused(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """The "one line, exit 2" contract: exit code 2, exactly one `... error: ...` line on stderr holding every
    fragment, no traceback, no torchrun failure block; returns that line."""
    lines = [line for line in proc.stderr.splitlines() if re.match(r"orch( train)?: error: ", line)]
    assert proc.returncode == 2 and len(lines) == 1, f"exit {proc.returncode}:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr, proc.stderr[-3000:]
    assert all(fragment in lines[0] for fragment in fragments), lines[0]
    return lines[0]


FIXTURES = Path(__file__).parent / "jobs_fixtures"


def make_project(tmp_path: Path, *scripts: str) -> Path:
    """A user's project folder holding copies of the named test job scripts."""
    import shutil

    folder = tmp_path / "project"
    folder.mkdir()
    for script in scripts:
        shutil.copy(FIXTURES / script, folder / script)
    return folder



@contextlib.contextmanager
def orch_serve(*args: str, env: dict | None = None, timeout: float = 60,
               python: str = sys.executable) -> Iterator[tuple[subprocess.Popen, str]]:
    """`orch serve ARGS... --port 0` in a subprocess (of `python`'s env): yields (process, base URL) once
    /v1/models answers; the process is killed on the way out if the test left it running."""
    import httpx

    proc = subprocess.Popen([python, "-m", "orchestrator", "serve", *args, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    try:
        seen: list[str] = []
        while not (match := re.search(r"at (http://127\.0\.0\.1:\d+)/v1", seen[-1] if seen else "")):
            line = proc.stderr.readline()
            assert line, "".join(seen)
            seen.append(line)
        url = match.group(1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(f"{url}/v1/models", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.2)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# values a user expects masked: every env name containing KEY, TOKEN, SECRET, PASSWORD, PASSWD, CREDENTIAL or PRIVATE
SECRETS = {"OPENAI_KEY": "sk-openai-4f2a", "WANDB_KEY": "wandb-9c1e", "SSH_KEY": "ssh-ed25519-77ab",
           "db_password": "hunter2-db", "HF_TOKEN": "hf_tok_31d0", "MY_PASSWD": "pw-5e5e",
           "AWS_SECRET": "aws-sec-0b0b", "GIT_CREDENTIALS": "cred-a1a1", "PRIVATE_PEM": "pem-c3c3"}


def with_secrets(inventory: str) -> tuple[str, list[str]]:
    """Half of SECRETS added to the inventory's `[cluster.env]`, half as `--env NAME=VALUE`: (inventory, args)."""
    on_cli = dict(list(SECRETS.items())[::2])
    in_inventory = "".join(f'{name} = "{value}"\n' for name, value in SECRETS.items() if name not in on_cli)
    assert "[cluster.env]\n" in inventory
    return (inventory.replace("[cluster.env]\n", "[cluster.env]\n" + in_inventory, 1),
            [arg for name, value in on_cli.items() for arg in ("--env", f"{name}={value}")])
