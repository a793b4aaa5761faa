"""Launch latency on the namespace test cluster: `orch launch --detach` until every node's script runs.

For 1, 2, 4 and 8 nodes, next to two baselines measured in the same run on the same nodes:
- sequential: what users do by hand, per node one `rsync` of the project then one `ssh ... setsid -f script`;
- parallel ssh: one fresh `ssh node 'setsid -f true'` per node, all at once (the floor: one handshake each).
Prints medians and the ratios the issue targets: 8 nodes vs 1 node (<= 1.3x) and vs raw parallel ssh (<= 1.5x).
All "nodes" share this machine's 2 cores, so a real torchrun starting on node 1 (a Python process importing torch)
would steal the CPU that nodes 2..8 need to be launched and measure the simulated nodes, not the controller. The
bench therefore points the nodes' `python` at a stand-in that just sleeps (the script still runs, writes its pgid,
and holds its place as torchrun would), and fixes master_port, as the baselines start `sleep` too.
Needs root (network namespaces). Run: `python3 bench/launch.py [--repeat 3]`.
"""

from __future__ import annotations

import argparse
import re
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.cluster.netns import TestCluster, up  # noqa: E402

SIZES = (1, 2, 4, 8)


def make_project(root: Path) -> Path:
    project = root / "project"
    (project / "src").mkdir(parents=True)
    for i in range(50):
        (project / "src" / f"mod{i}.py").write_text(f"VALUE = {i}\n" * 50)
    (project / "train.py").write_text("import time\ntime.sleep(30)\n")
    return project


def wait_running(cluster: TestCluster, names: list[str], job_dir_of) -> None:
    """Until every node's launch script has written its pgid."""
    pending = set(names)
    while pending:
        pending = {n for n in pending if not job_dir_of(n).joinpath("pgid").exists()}
        if pending:
            time.sleep(0.002)


def time_orch(cluster: TestCluster, project: Path, names: list[str], env: dict) -> tuple[float, float]:
    """(seconds until every node's script runs, seconds until `orch launch --detach` returned)."""
    jobs = {n: cluster.node_path(n, "jobs") for n in names}
    before = {n: set(os.listdir(d)) if d.exists() else set() for n, d in jobs.items()}

    def started(name: str) -> bool:
        folder = jobs[name]
        return folder.exists() and any((folder / j / "pgid").exists() for j in set(os.listdir(folder)) - before[name])

    begun = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "launch", "--detach", "--nodes", ",".join(names),
                             "--skip-checks", "--", "python", "train.py"], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pending = set(names)
    while pending and proc.poll() in (None, 0):
        pending = {n for n in pending if not started(n)}
        if pending:
            time.sleep(0.002)
    running = time.perf_counter() - begun
    out, err = proc.communicate()
    returned = time.perf_counter() - begun
    if proc.returncode != 0:
        raise SystemExit(f"orch launch failed: {err}")
    subprocess.run([sys.executable, "-m", "orchestrator", "stop", out.strip().splitlines()[-1]], env=env,
                   capture_output=True)
    return running, returned


def time_sequential(cluster: TestCluster, project: Path, names: list[str], run: int) -> float:
    ssh = ["ssh", "-F", str(cluster.ssh_config)]
    started = time.perf_counter()
    for name in names:
        target = f"{cluster.workdir}/manual/{run}"
        subprocess.run(["rsync", "-a", "-e", " ".join(ssh), f"--rsync-path=mkdir -p {target} && rsync",
                        f"{project}/", f"{name}:{target}/"], check=True, capture_output=True)
        subprocess.run([*ssh, name, f"cd {target} && setsid -f sh -c 'echo $$ > pgid; sleep 5' >/dev/null 2>&1 "
                                    "</dev/null"], check=True, capture_output=True)
    wait_running(cluster, names, lambda n: cluster.node_path(n, "manual", str(run)))
    return time.perf_counter() - started


def time_parallel_ssh(cluster: TestCluster, names: list[str]) -> float:
    ssh = ["ssh", "-F", str(cluster.ssh_config)]
    started = time.perf_counter()
    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(lambda n: subprocess.run([*ssh, n, "setsid -f true </dev/null >/dev/null 2>&1"],
                                               check=True, capture_output=True), names))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    cluster = up(max(SIZES))
    env = {**os.environ, "ORCH_HOME": str(tmp / "home"), "ORCH_CLUSTER": str(cluster.inventory)}
    project = make_project(tmp)
    stand_in = tmp / "python-stand-in"
    stand_in.write_text("#!/bin/sh\nexec sleep 30\n")
    stand_in.chmod(0o755)
    text = cluster.inventory.read_text()
    text = text.replace('master_port = "auto"', "master_port = 29400")
    cluster.inventory.write_text(re.sub(r'python = ".*"', f'python = "{stand_in}"', text))
    results: dict[str, dict[int, float]] = {"orch": {}, "orch_returned": {}, "sequential": {}, "parallel_ssh": {}}
    try:
        run = 0
        for size in SIZES:
            names = [f"node{i}" for i in range(size)]
            samples: dict[str, list[float]] = {k: [] for k in results}
            for _ in range(args.repeat):
                run += 1
                running, returned = time_orch(cluster, project, names, env)
                samples["orch"].append(running)
                samples["orch_returned"].append(returned)
                samples["sequential"].append(time_sequential(cluster, project, names, run))
                samples["parallel_ssh"].append(time_parallel_ssh(cluster, names))
            for key, values in samples.items():
                results[key][size] = statistics.median(values)
    finally:
        cluster.down()
        shutil.rmtree(tmp, ignore_errors=True)
    print("orch: until every node's script runs (the issue's measure); orch returned: until the command exits")
    print(f"{'nodes':>5} {'orch s':>8} {'returned s':>11} {'sequential s':>13} {'parallel ssh s':>15} "
          f"{'orch/seq':>9} {'orch/ssh':>9}")
    for size in SIZES:
        o, r = results["orch"][size], results["orch_returned"][size]
        s, p = results["sequential"][size], results["parallel_ssh"][size]
        print(f"{size:>5} {o:>8.3f} {r:>11.3f} {s:>13.3f} {p:>15.3f} {o / s:>9.2f} {o / p:>9.2f}")
    scale = results["orch"][8] / results["orch"][1]
    floor = results["orch"][8] / results["parallel_ssh"][8]
    floor_scale = results["parallel_ssh"][8] / results["parallel_ssh"][1]
    print(f"orch 8 nodes / 1 node: {scale:.2f}x (target <= 1.3); raw parallel ssh itself, 8 / 1 node: "
          f"{floor_scale:.2f}x (the nodes' sshd share this machine's cores)")
    print(f"orch 8 nodes / raw parallel ssh 8 nodes: {floor:.2f}x (target <= 1.5)")


if __name__ == "__main__":
    main()
