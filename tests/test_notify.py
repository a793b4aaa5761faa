"""Notifications on the namespace test cluster: the notify command runs on the controller with the job's JSON
on stdin when the job ends (`--notify CMD`) and when it fails (`[cluster] notify`: cluster.example.toml's Slack
webhook line, posting to a local stand-in for Slack's webhook URL)."""

from __future__ import annotations

import json
import shlex
import shutil
import threading
import time
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.needs import missing
from tests.orch_cli import job_id_of, orch

PROJECT_SCRIPTS = ("steady.py",)  # copied into the `project` fixture (tests/conftest.py)
EXAMPLE = Path(__file__).resolve().parent.parent / "cluster.example.toml"


def wait_for(found, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not (value := found()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return value


def example_notify() -> str:
    """The commented `notify = ...` line of cluster.example.toml, as TOML reads it once uncommented."""
    line = next(line for line in EXAMPLE.read_text().splitlines() if line.startswith("# notify = "))
    return tomllib.loads(line[2:])["notify"]


class Webhook(BaseHTTPRequestHandler):
    posts: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Webhook.posts.append({"type": self.headers["Content-Type"], "body": json.loads(body)})
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        return


def test_notify_gets_the_jobs_json_when_it_ends(project, env, cluster, tmp_path):
    ended = tmp_path / "ended.jsonl"
    launched = orch("launch", "--detach", "--nodes", "node0,node1", "--notify", f"cat >> {shlex.quote(str(ended))}",
                    "--", "python", "steady.py", cwd=project, env={**env, "STEADY_S": "1"}, check=True)
    job_id = job_id_of(launched)
    text = wait_for(lambda: ended.exists() and ended.read_text(), "the notify command")
    [event] = [json.loads(line) for line in text.splitlines()]
    assert event["id"] == job_id and event["event"] == "ended" and event["state"] == "SUCCEEDED"
    assert [n["name"] for n in event["nodes"]] == ["node0", "node1"] and event["stragglers"] == []


def test_the_example_slack_line_posts_the_failure(project, env, cluster, tmp_path):
    if not (shutil.which("jq") and shutil.which("curl")):
        missing("jq and curl are not installed (scripts/setup.sh installs them)")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    inventory = tmp_path / "cluster.toml"
    text = Path(env["ORCH_CLUSTER"]).read_text()
    inventory.write_text(text.replace("[cluster]", f"[cluster]\nnotify = {json.dumps(example_notify())}", 1))
    try:
        launched = orch("launch", "--detach", "--cluster", str(inventory), "--nodes", "node0,node1", "--env",
                        "FAIL_ATTEMPTS=1", "--", "python", "steady.py", cwd=project, check=True,
                        env={**env, "SLACK_WEBHOOK_URL": f"http://127.0.0.1:{server.server_address[1]}/hook"})
        job_id = job_id_of(launched)
        [post] = wait_for(lambda: list(Webhook.posts), "the webhook post")
    finally:
        server.shutdown()
    assert post["type"] == "application/json"
    message = post["body"]["text"]
    assert message.startswith(f"orch job {job_id}: failed FAILED node node") and "exit code 5" in message, message
