"""`orch dashboard` in a real headless Chromium, over real jobs on the namespace test cluster (2 nodes):

- a LoRA training job while it runs and after it ends: both nodes, the state, the loss curve with every logged
  step and an eval curve; its slowed rank (ORCH_FAILPOINT=slow-rank) named a straggler by `orch status --json`
  while it runs, and marked on the page;
- a node failing: its cell turns red and the root cause shows;
- a stop from the page ends a job (token given); the same request without the token is refused; a restart
  without a node relaunches it elsewhere.
The job page's screenshot is kept under tests/artifacts/ (the README's picture comes from it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, Browser
from tests.needs import missing
from tests.orch_cli import demo_project, job_id_of, job_json, orch

ARTIFACTS = Path(__file__).parent / "artifacts"
CONFIG = """\
model: base
stage: sft
finetuning: lora
data: {train: [data/train.jsonl], template: chatml, max_length: 96, eval_ratio: 0.1}
lora: {r: 4, alpha: 8, dropout: 0.0, target_modules: all-linear}
training_args: {output_dir: out/web, max_steps: 40, per_device_train_batch_size: 2, learning_rate: 1.0e-3,
                logging_steps: 2, eval_strategy: steps, eval_steps: 20, per_device_eval_batch_size: 2,
                save_strategy: 'no', report_to: none, seed: 7, dataloader_num_workers: 0}
"""
FAIL = """\
import os, sys, time
print("node", os.environ["ORCH_NODE"], "up", flush=True)
if os.environ["ORCH_NODE"] == "node1":
    time.sleep(1)
    raise RuntimeError("the disk on node1 is full (on purpose)")
time.sleep(120)
"""
SLEEP = "import time\nprint('sleeping', flush=True)\ntime.sleep(300)\n"


@pytest.fixture(scope="module")
def web_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = demo_project(tmp_path_factory.mktemp("dash-web") / "llm")
    (folder / ".orchignore").write_text("out/\n")
    (folder / ".gitignore").write_text("base/\ndata/\n")
    (folder / "web.yaml").write_text(CONFIG)
    (folder / "fail.py").write_text(FAIL)
    (folder / "sleep.py").write_text(SLEEP)
    return folder


@pytest.fixture
def dashboard(env):
    """`orch dashboard --port 0`: yields the URL it printed (with its token)."""
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "dashboard", "--port", "0"], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, **env})
    try:
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/\?token=(\S+)", line)
        assert match, line
        yield match.group(1), match.group(2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def browser(tmp_path: Path):
    if CHROMIUM is None:
        missing("Debian's chromium is not installed (scripts/setup.sh installs it)")
    chromium = Browser(tmp_path / "profile")
    yield chromium
    chromium.close()


def launch(project: Path, env: dict, *args: str) -> str:
    launched = orch("launch", "--nodes", "node0,node1", "--nproc-per-node", "1", "--detach", *args, cwd=project,
                    env=env, timeout=300)
    assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-2000:]
    return job_id_of(launched)


def wait_final(job_id: str, env: dict, timeout: float = 400) -> dict:
    deadline = time.monotonic() + timeout
    while (status := job_json(job_id, env=env))["state"] not in ("SUCCEEDED", "FAILED", "STOPPED", "LOST"):
        assert time.monotonic() < deadline, status
        time.sleep(1)
    return status


def steps_in(browser: Browser, metric: str) -> list[int]:
    return browser.js(f"Array.from(document.querySelectorAll('#chart-{metric} circle')).map(c => +c.dataset.step)")


def node_states(browser: Browser) -> dict:
    return browser.js("Object.fromEntries(Array.from(document.querySelectorAll('td.node')).map("
                      "c => [c.dataset.node, c.dataset.state]))")


def test_training_job_page_while_it_runs_and_after_it_ends(web_project, env, dashboard, browser):
    url, token = dashboard
    job_id = launch(web_project, env, "--env", "ORCH_FAILPOINT=slow-rank:1:0.3", "web.yaml")
    browser.page("Page.navigate", url=f"{url}/jobs/{job_id}?token={token}")
    # while it runs: both nodes RUNNING and a loss curve with the steps logged so far
    browser.wait_for("document.getElementById('state').textContent === 'RUNNING'"
                     " && document.querySelectorAll('#chart-loss circle').length >= 2", timeout=300)
    assert node_states(browser) == {"node0": "RUNNING", "node1": "RUNNING"}
    browser.wait_for("document.getElementById('log').textContent.includes('[node0|0] ')", timeout=60)  # live log
    # the slowed rank is a straggler in `orch status --json` while the job runs, and marked on the page
    deadline = time.monotonic() + 120
    while not (status := job_json(job_id, env=env))["stragglers"] and status["state"] == "RUNNING":
        assert time.monotonic() < deadline, status
        time.sleep(1)
    assert status["state"] == "RUNNING", "the job ended before a straggler was named"
    assert [(s["node"], s["rank"], s["what"]) for s in status["stragglers"]] == [("node1", 1, "compute")]
    assert status["stragglers"][0]["ratio"] >= 1.3
    assert "straggler: rank 1 on node1: compute" in orch("status", job_id, env=env, check=True).stdout
    browser.wait_for("document.querySelector('td.rank.straggler[data-rank=\"1\"]') !== null", timeout=30)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.screenshot(ARTIFACTS / "dashboard_job_running.png")

    final = wait_final(job_id, env)
    assert final["state"] == "SUCCEEDED", final
    browser.wait_for("document.getElementById('state').textContent === 'SUCCEEDED'", timeout=30)
    assert node_states(browser) == {"node0": "SUCCEEDED", "node1": "SUCCEEDED"}
    logged = [json.loads(line) for line in (Path(final["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    browser.wait_for(f"document.querySelectorAll('#chart-loss circle').length === {sum('loss' in r for r in logged)}")
    assert steps_in(browser, "loss") == list(range(2, 41, 2))
    assert steps_in(browser, "eval_loss") == [20, 40]
    assert steps_in(browser, "learning_rate") == steps_in(browser, "grad_norm") == list(range(2, 41, 2))
    browser.page("Emulation.setDeviceMetricsOverride", width=1200, height=1250, deviceScaleFactor=1, mobile=False)
    browser.js("document.getElementById('log-filter').value = 'loss';"
               " document.getElementById('log-filter').dispatchEvent(new Event('input'))")
    browser.wait_for("document.getElementById('log').textContent.includes(\"[node0|0] {'loss'\")")  # bars' \r cut
    browser.screenshot(ARTIFACTS / "dashboard_job_page.png")  # docs/assets/dashboard-job.png is a copy


def test_a_failed_node_turns_red_with_the_root_cause_and_a_stop_needs_the_token(web_project, env, dashboard,
                                                                                 browser):
    url, token = dashboard
    failed = launch(web_project, env, "--", "fail.py")
    browser.page("Page.navigate", url=f"{url}/jobs/{failed}?token={token}")
    browser.wait_for("document.querySelector('td.node[data-node=\"node1\"]').dataset.state === 'FAILED'", timeout=120)
    red = browser.js("getComputedStyle(document.querySelector('td.node[data-node=\"node1\"]')).backgroundColor")
    assert red == "rgb(255, 179, 179)", red
    browser.wait_for("document.getElementById('root-cause').textContent.includes('node node1')", timeout=60)
    cause = browser.js("document.getElementById('root-cause').textContent")
    assert "the disk on node1 is full" in cause, cause
    # the log pane: every node with [node|rank] prefixes, then filtered
    browser.js("const pick = document.getElementById('log-node'); pick.value = 'all';"
               " pick.dispatchEvent(new Event('change'))")
    browser.wait_for("document.getElementById('log').textContent.includes('[node1|1] node node1 up')"
                     " && document.getElementById('log').textContent.includes('[node0|0] node node0 up')")
    browser.js("const box = document.getElementById('log-filter'); box.value = 'disk on';"
               " box.dispatchEvent(new Event('input'))")
    shown = browser.js("document.getElementById('log').textContent").splitlines()
    assert shown and all("disk on" in line for line in shown) and any(line.startswith("[node1|1] ") for line in shown)

    running = launch(web_project, env, "--", "sleep.py")
    browser.page("Page.navigate", url=f"{url}/jobs/{running}?token={token}")
    browser.wait_for("document.getElementById('state').textContent === 'RUNNING'", timeout=120)
    stop = f"/api/jobs/{running}/stop"
    refused = browser.js(f"Promise.all([fetch('{stop}', {{method: 'POST'}}).then(r => r.status), fetch('{stop}',"
                         " {method: 'POST', headers: {'X-Orch-Token': 'guess'}}).then(r => r.status)])")
    assert refused == [401, 403]
    assert job_json(running, env=env)["state"] == "RUNNING"
    browser.js("document.getElementById('stop').click()")
    browser.wait_for("document.getElementById('state').textContent === 'STOPPED'", timeout=120)
    assert job_json(running, env=env)["state"] == "STOPPED"
    # Restart without node1: `orch restart --exclude-node node1`; the page moves to the new job
    browser.js("document.getElementById('exclude').value = 'node1'; document.getElementById('restart').click()")
    browser.wait_for(f"!location.pathname.endsWith('{running}')", timeout=120)
    relaunched = job_json(browser.js("decodeURIComponent(location.pathname.split('/').pop())"), env=env)
    assert relaunched["restart_of"] == running and [n["name"] for n in relaunched["nodes"]] == ["node0"]
    assert orch("stop", relaunched["id"], env=env).returncode == 0
