"""Benchmark `orch dashboard` at scale (issue 18): a job of 64 nodes x 8 ranks.

The store and run folder are synthetic (tests/synthetic_jobs.py: 64 nodes, 512 ranks' timing, `--steps` logged
steps with evals every 10, and 50 other jobs in the list); the server is the real `orch dashboard` process.

1. Start-up: seconds from starting `orch dashboard` to its first answer on /api/jobs (target < 2 s).
2. Job page over HTTP: the four requests a browser makes for /jobs/<id> (page, script, style, /api/jobs/<id>),
   median of 10 (target < 1 s).
3. Job page in Chromium (when installed): from navigation to the grid's 64 rows and the loss curve drawn
   (target < 1 s), median of 5.
4. CPU of the dashboard process: idle with no page open, over `--idle` seconds (target < 5% of a core); and
   with the job page open (it polls every 2 s; its log pane closed, as the synthetic nodes do not exist),
   reported beside.

    PYTHONPATH=. python bench/dashboard.py [--nodes 64] [--ranks 8] [--steps 2000] [--idle 20]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import byte_compile_orch  # noqa: E402
from tests.browser import CHROMIUM, Browser  # noqa: E402
from tests.synthetic_jobs import add_job  # noqa: E402

JOB = "20260101-000000-big0"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=64)
    ap.add_argument("--ranks", type=int, default=8)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--idle", type=float, default=20)
    a = ap.parse_args()
    byte_compile_orch()
    with tempfile.TemporaryDirectory(prefix="orch-bench-dash-") as tmp:
        home = Path(tmp) / "home"
        os.environ["ORCH_HOME"] = str(home)
        from orchestrator.jobs.store import Store

        store = Store()
        for index in range(50):
            add_job(store, f"20251231-000000-{index:04x}", nodes=2, ranks_per_node=2, steps=20, state="SUCCEEDED")
        add_job(store, JOB, nodes=a.nodes, ranks_per_node=a.ranks, steps=a.steps, slow_rank=a.nodes * a.ranks - 1)

        began = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "dashboard", "--port", "0"], text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=os.environ.copy())
        try:
            match = re.search(r"(http://[\d.]+:\d+)/\?token=(\S+)", proc.stdout.readline())
            base, token = match.group(1), match.group(2)
            get(base + "/api/jobs")
            startup = time.perf_counter() - began

            page_times = []
            for _ in range(10):
                t0 = time.perf_counter()
                for path in (f"/jobs/{JOB}", "/static/app.js", "/static/style.css", f"/api/jobs/{JOB}"):
                    get(base + path)
                page_times.append(time.perf_counter() - t0)
            size = len(get(base + f"/api/jobs/{JOB}"))

            time.sleep(1)
            c0 = cpu_seconds(proc.pid)
            time.sleep(a.idle)
            idle = (cpu_seconds(proc.pid) - c0) / a.idle

            browser_times, open_cpu = [], None
            if CHROMIUM:
                browser = Browser(Path(tmp) / "profile")
                try:
                    for _ in range(5):
                        browser.page("Page.navigate", url="about:blank")
                        t0 = time.perf_counter()
                        browser.page("Page.navigate", url=f"{base}/jobs/{JOB}?token={token}")
                        browser.wait_for(f"document.querySelectorAll('td.node').length === {a.nodes}"
                                         " && document.querySelector('#chart-loss polyline') !== null", 30)
                        browser_times.append(time.perf_counter() - t0)
                    browser.js("source && source.close()")  # the log pane: the synthetic nodes do not exist
                    c0 = cpu_seconds(proc.pid)
                    time.sleep(a.idle)
                    open_cpu = (cpu_seconds(proc.pid) - c0) / a.idle
                finally:
                    browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    print(f"job: {a.nodes} nodes x {a.ranks} ranks, {a.steps} logged steps; /api/jobs/<id> is {size / 1e3:.0f} kB")
    print(f"start-up to first answer: {startup:.2f} s  target < 2 s  {'PASS' if startup < 2 else 'FAIL'}")
    http = statistics.median(page_times)
    print(f"job page over HTTP (4 requests), median of 10: {http * 1e3:.0f} ms  target < 1 s  "
          f"{'PASS' if http < 1 else 'FAIL'}")
    if browser_times:
        shown = statistics.median(browser_times)
        print(f"job page in Chromium, navigation to grid + curves drawn, median of 5: {shown * 1e3:.0f} ms  "
              f"target < 1 s  {'PASS' if shown < 1 else 'FAIL'}")
    else:
        print("job page in Chromium: not measured (chromium is not installed)")
    print(f"CPU idle (no page open), {a.idle:.0f} s: {100 * idle:.2f}% of a core  target < 5%  "
          f"{'PASS' if idle < 0.05 else 'FAIL'}")
    if open_cpu is not None:
        print(f"CPU with the job page open (polls every 2 s; log pane closed): {100 * open_cpu:.1f}% of a core")


if __name__ == "__main__":
    main()
