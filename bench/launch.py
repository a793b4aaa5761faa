"""Launch latency on the namespace test cluster: `orch launch --detach` (default flags) until every node's script runs,
and until the command returns (what a user waits for at the prompt).

For 1, 2, 4 and 8 nodes, in the same run on the same nodes:
- orch: `orch launch --detach` as a user runs it (preflight checks on), until every node's launch script has
  written its pgid; `--skip-checks` beside it (what a user gets by turning the checks off);
- bare: what a careful hand-written script does: per node, all nodes at once, one `rsync -a` of the project into a
  cache folder and one `ssh node 'setsid -f ...'` start, both over SSH master connections opened before the clock
  starts (persisted ControlMaster);
- `orch --version`: the interpreter and CLI start-up that any orch command pays.
orch's modules are byte-compiled first, as `pip install` leaves them.
Before the timed runs, one untimed launch of each kind per size (warm caches and connections on both sides).
Targets (issues 12, 17): at 8 nodes, (orch - orch --version) <= 1.5x bare, both until running and until returned;
orch's 8/1-node growth <= 1.3x bare's.
All "nodes" share this machine's 2 cores, so a real torchrun starting on node 1 (a Python process importing torch)
would steal the CPU that nodes 2..8 need to be launched. The nodes' `python` is therefore a stand-in: `-c CODE`
and `-S -c CODE` (the preflight, the port pick) run the real interpreter; anything else (the job) just sleeps, holding its place as
torchrun would. The baseline starts `sleep` too.
Needs root (network namespaces). Run: `python3 bench/launch.py [--repeat 5]`.
"""

from __future__ import annotations

import argparse
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
from bench.common import byte_compile_orch  # noqa: E402
from tests.cluster.netns import TestCluster, up  # noqa: E402

SIZES = (1, 2, 4, 8)
ORCH = [sys.executable, "-m", "orchestrator"]


def make_project(root: Path) -> Path:
    """50 small modules and a train.py: a project the size of a user's fine-tuning scripts."""
    project = root / "project"
    (project / "src").mkdir(parents=True)
    for i in range(50):
        (project / "src" / f"mod{i}.py").write_text(f"VALUE = {i}\n" * 50)
    (project / "train.py").write_text("import time\ntime.sleep(30)\n")
    return project


def python_stand_in(root: Path) -> Path:
    """The nodes' `python`: real for `-c CODE`, a sleeper for the job itself."""
    stand_in = root / "python-stand-in"
    stand_in.write_text(f'#!/bin/sh\ncase "$1" in -c|-S) exec {sys.executable} "$@";; esac\nexec sleep 30\n')
    stand_in.chmod(0o755)
    return stand_in


def wait_for(paths: list[Path], proc: subprocess.Popen | None = None) -> None:
    """Until every path exists (or `proc` failed)."""
    pending = list(paths)
    while pending and (proc is None or proc.poll() in (None, 0)):
        pending = [p for p in pending if not p.exists()]
        if pending:
            time.sleep(0.002)


def time_orch(cluster: TestCluster, project: Path, names: list[str], env: dict, *flags: str) -> tuple[float, float]:
    """Seconds from starting `orch launch --detach` until every node's script runs, and until the command has
    returned; the job is then stopped."""
    jobs = {n: cluster.node_path(n, "jobs") for n in names}
    before = {n: set(os.listdir(d)) if d.exists() else set() for n, d in jobs.items()}

    def started(name: str) -> bool:
        folder = jobs[name]
        return folder.exists() and any((folder / j / "pgid").exists() for j in set(os.listdir(folder)) - before[name])

    begun = time.perf_counter()
    proc = subprocess.Popen([*ORCH, "launch", "--detach", "--nodes", ",".join(names), *flags, "--", "python",
                             "train.py"], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    pending = set(names)
    running = returned = None
    while running is None or returned is None:
        now = time.perf_counter() - begun
        if returned is None and proc.poll() is not None:
            returned = now
            if proc.returncode != 0:
                raise SystemExit(f"orch launch failed: {proc.communicate()[1]}")
        pending = {n for n in pending if not started(n)}
        if running is None and not pending:
            running = now
        time.sleep(0.002)
    out, err = proc.communicate()
    subprocess.run([*ORCH, "stop", out.strip().splitlines()[-1]], env=env, capture_output=True)
    return running, returned


class Bare:
    """The hand-written baseline: rsync + ssh per node, all at once, over masters opened beforehand."""

    def __init__(self, cluster: TestCluster, project: Path, control: Path):
        self.cluster, self.project, self.control = cluster, project, control
        self.ssh = ["ssh", "-F", str(cluster.ssh_config), "-o", f"ControlPath={control}/%C"]
        self.runs = 0

    def open(self, names: list[str]) -> None:
        for name in names:
            subprocess.run([*self.ssh, "-o", "ControlMaster=auto", "-o", "ControlPersist=yes", "-f", "-N", name],
                           check=True, capture_output=True)

    def close(self, names: list[str]) -> None:
        for name in names:
            subprocess.run([*self.ssh, "-O", "exit", name], capture_output=True)

    def launch(self, names: list[str]) -> float:
        self.runs += 1
        run_dir = f"{self.cluster.workdir}/manual/run{self.runs}"
        cache = f"{self.cluster.workdir}/manual/code"

        def one(name: str) -> None:
            subprocess.run(["rsync", "-a", "--delete", "-e", " ".join(self.ssh), f"--rsync-path=mkdir -p {cache} && "
                            "rsync", f"{self.project}/", f"{name}:{cache}/"], check=True, capture_output=True)
            subprocess.run([*self.ssh, name, f"mkdir -p {run_dir} && cp -al {cache} {run_dir}/code && cd {run_dir} "
                            "&& setsid -f sh -c 'echo $$ > pgid; exec sleep 5' >/dev/null 2>&1 </dev/null"],
                           check=True, capture_output=True)

        started = time.perf_counter()
        with ThreadPoolExecutor(len(names)) as pool:
            list(pool.map(one, names))
        wait_for([self.cluster.node_path(n, "manual", f"run{self.runs}", "pgid") for n in names])
        return time.perf_counter() - started


def time_version(env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([*ORCH, "--version"], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    byte_compile_orch()
    tmp = Path(tempfile.mkdtemp(prefix="orch-bench-"))
    cluster = up(max(SIZES), python=str(python_stand_in(tmp)))
    env = {**os.environ, "ORCH_HOME": str(tmp / "home"), "ORCH_CLUSTER": str(cluster.inventory)}
    project = make_project(tmp)
    (tmp / "control").mkdir(mode=0o700)
    bare = Bare(cluster, project, tmp / "control")
    kinds = ("orch", "returned", "skip_checks", "bare", "version")
    results: dict[str, dict[int, float]] = {k: {} for k in kinds}
    try:
        for size in SIZES:
            names = [f"node{i}" for i in range(size)]
            bare.open(names)
            time_orch(cluster, project, names, env)  # warm-up, untimed: both sides start warm
            bare.launch(names)
            samples: dict[str, list[float]] = {k: [] for k in kinds}
            for _ in range(args.repeat):
                running, returned = time_orch(cluster, project, names, env)
                samples["orch"].append(running)
                samples["returned"].append(returned)
                samples["skip_checks"].append(time_orch(cluster, project, names, env, "--skip-checks")[0])
                samples["bare"].append(bare.launch(names))
                samples["version"].append(time_version(env))
            for key, values in samples.items():
                results[key][size] = statistics.median(values)
            bare.close(names)
    finally:
        cluster.down()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"orch: until every node's script runs; returned: until `orch launch --detach` has returned; medians of "
          f"{args.repeat} runs after one warm-up run each")
    print(f"{'nodes':>5} {'orch s':>8} {'returned s':>11} {'--skip-checks s':>16} {'bare s':>8} "
          f"{'orch --version s':>17} {'(orch-version)/bare':>20} {'(returned-version)/bare':>24}")
    for size in SIZES:
        o, r, k, b, v = (results[key][size] for key in kinds)
        print(f"{size:>5} {o:>8.3f} {r:>11.3f} {k:>16.3f} {b:>8.3f} {v:>17.3f} {(o - v) / b:>20.2f} "
              f"{(r - v) / b:>24.2f}")
    o8, r8, v8, b8 = results["orch"][8], results["returned"][8], results["version"][8], results["bare"][8]
    for what, value in (("running", o8), ("returned", r8)):
        ratio = (value - v8) / b8
        print(f"8 nodes, {what}: (orch - orch --version) / bare: {ratio:.2f}x  target <= 1.5  "
              f"{'PASS' if ratio <= 1.5 else 'FAIL'}")
    growth, bare_growth = o8 / results["orch"][1], b8 / results["bare"][1]
    print(f"8/1-node growth: orch {growth:.2f}x, bare {bare_growth:.2f}x, ratio {growth / bare_growth:.2f}  "
          f"target <= 1.3  {'PASS' if growth / bare_growth <= 1.3 else 'FAIL'}")
    skip = results["skip_checks"][8]
    print(f"beside it, --skip-checks at 8 nodes: {skip:.3f} s, (skip - version) / bare {(skip - v8) / b8:.2f}x")


if __name__ == "__main__":
    main()
