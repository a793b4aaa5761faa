"""`orch dashboard`'s server against a real store (synthetic rows): the API's shape, who may act, hang stacks
grouped by identical stack. The browser drives the pages in tests/test_dashboard_web.py."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from orchestrator.dashboard import hangs
from orchestrator.dashboard.logstream import as_shown
from orchestrator.dashboard.server import make
from orchestrator.jobs.store import Store
from tests.synthetic_jobs import add_job


@pytest.fixture
def served(orch_home: Path):
    """A dashboard on a free loopback port over a store holding one job; yields (base URL, token, store)."""
    store = Store()
    add_job(store, "20260101-000000-aaaa", slow_rank=3)
    server = make("127.0.0.1", 0, store, token="s3cret")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", "s3cret", store
    server.shutdown()
    server.server_close()


def call(url: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def page_status(url: str) -> int:
    """The HTTP status of a page (its body is HTML, not JSON)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_job_api_is_status_json_plus_metrics_and_stragglers(served):
    base, _, _ = served
    status, jobs = call(base + "/api/jobs")
    assert status == 200 and jobs[0]["id"] == "20260101-000000-aaaa" and jobs[0]["progress"] == 0.5
    status, job = call(base + "/api/jobs/20260101-000000-aaaa")
    assert status == 200 and {"id", "state", "nodes", "root_cause", "progress"} <= set(job)
    assert job["metrics"]["loss"][:2] == [[1, 3.0], [2, 1.5]] and len(job["metrics"]["loss"]) == 20
    assert job["metrics"]["eval_rouge-1"] == [[10, 10.0], [20, 20.0]]
    assert job["stragglers"] == [{"node": "node1", "rank": 3, "ratio": 5.0, "what": "compute"}]
    assert [r["straggler"] for r in job["ranks"]] == [False, False, False, True]
    assert call(base + "/api/jobs/nope")[0] == 404


def test_a_queued_job_shows_its_schedulers_state_and_reason(served):
    base, _, store = served
    job = add_job(store, "20260101-000000-cccc", state="PENDING", steps=0)
    store.set_option(job, "scheduler", {"name": "slurm", "job_id": "42", "state": "PENDING", "reason": "Resources"})
    status, shown = call(base + "/api/jobs/20260101-000000-cccc")
    assert status == 200 and shown["scheduler_title"] == "Slurm" and shown["metrics"] == {}
    assert {k: shown["scheduler"][k] for k in ("job_id", "state", "reason")} == {
        "job_id": "42", "state": "PENDING", "reason": "Resources"}


def test_actions_need_the_token_in_a_header_and_a_same_origin_page(served):
    base, token, _ = served
    url = base + "/api/jobs/20260101-000000-aaaa/stop"
    assert call(url, "POST")[0] == 401
    assert call(url, "POST", {"X-Orch-Token": "wrong"})[0] == 403
    assert call(url + f"?token={token}", "POST")[0] == 401  # in the URL is not enough for an action
    assert call(url, "POST", {"X-Orch-Token": token, "Origin": "http://evil.example"})[0] == 403
    # a page of another domain resolving to 127.0.0.1 (DNS rebinding) cannot read the API either
    assert call(base + "/api/jobs", headers={"Host": "evil.example:8265"})[0] == 403


def test_log_lines_show_what_a_terminal_leaves_after_carriage_returns():
    assert as_shown(b"\r 10%|#  |\r          \r{'loss': 2.0}\r") == "{'loss': 2.0}"
    assert as_shown(b"\x1b[A{'eval_loss': 1.5}\x1b[0m") == "{'eval_loss': 1.5}"
    assert as_shown("plain 中文".encode()) == "plain 中文"


def test_pages_load_nothing_from_the_network():
    """No CDN: the page, script and style name no http(s) URL."""
    from orchestrator.dashboard.server import STATIC

    for path in STATIC.iterdir():
        assert not re.search(r"https?://", path.read_text()), path


def test_a_public_address_needs_the_token_for_every_page(orch_home: Path):
    store = Store()
    add_job(store, "20260101-000000-bbbb")
    server = make("0.0.0.0", 0, store, token="t0k")
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert call(base + "/api/jobs")[0] == 401
        assert call(base + "/api/jobs?token=nope")[0] == 403
        assert call(base + "/api/jobs?token=t0k")[0] == 200
        assert call(base + "/api/jobs", headers={"X-Orch-Token": "t0k"})[0] == 200
        for page in ("/", "/jobs/20260101-000000-bbbb"):  # the HTML pages too, not only the API
            assert page_status(base + page) == 401
            assert page_status(base + page + "?token=t0k") == 200
    finally:
        server.shutdown()
        server.server_close()


REPORT = """===== node0
== pid 5000: python -m orchestrator.train job.yaml
Thread 0x00007f01 (most recent call first):
  File "/x/torch/distributed/distributed_c10d.py", line 88 in all_reduce
  File "/x/train.py", line 12 in step

== pid 5001: python -m orchestrator.train job.yaml
Thread 0x00007f99 (most recent call first):
  File "/x/torch/distributed/distributed_c10d.py", line 88 in all_reduce
  File "/x/train.py", line 12 in step

===== node1
== pid 5002: python -m orchestrator.train job.yaml
Thread 0x00007f55 (most recent call first):
  File "/x/torch/utils/data/dataloader.py", line 630 in __next__
"""


def test_hang_reports_group_ranks_with_identical_stacks(tmp_path: Path):
    (tmp_path / "hang-20260101-000000.txt").write_text(REPORT)
    [report] = hangs.reports(str(tmp_path), {5000: 0, 5001: 1, 5002: 2})
    assert [(g["who"], g["where"]) for g in report["groups"]] == [
        (["rank 0", "rank 1"], "all_reduce at distributed_c10d.py:88"), (["rank 2"], "__next__ at dataloader.py:630")]
