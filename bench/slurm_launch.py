"""Launch latency and status cost on a real Slurm cluster (tests/cluster/slurm.py), against hand-written baselines
measured in the same run on the same cluster:
- launch: `orch launch --detach --nodes N` (default flags) until every rank's wrapper runs (its pgid file), vs what a user writes
  by hand: rsync the project to the shared workdir, then `sbatch` a script whose `srun` task writes a file per node;
- status: `orch status JOB` (squeue + every rank's files, one CLI process) vs `squeue -j JOB`.
As in bench/launch.py, the nodes' python is a stand-in that sleeps, so a torch import on the same 2 cores does not
measure the simulated nodes instead of the launcher. slurmctld starts a submitted batch job on its next scheduling pass
(about every second), so each submission waits a random 1-2 s first and the two sides alternate (ABBA). Needs root. Run: `python3 bench/slurm_launch.py [--repeat 5]`.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import byte_compile_orch  # noqa: E402
from tests.cluster.slurm import SlurmCluster, up  # noqa: E402

HAND_SBATCH = """#!/bin/bash
#SBATCH --nodes={n}
#SBATCH --ntasks-per-node=1
#SBATCH --output={out}/slurm-%j.out
export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_PORT=29500
srun --kill-on-bad-exit=1 bash -c 'echo $$ > {out}/ran-$SLURM_JOB_ID-$SLURM_NODEID; exec sleep 30'
"""


def wait_files(paths: list[Path], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            raise RuntimeError(f"not running after {timeout} s: {paths}")
        time.sleep(0.002)


def orch_launch(cluster: SlurmCluster, project: Path, env: dict, n: int) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "launch", "--detach", "--nodes", str(n), "--",
                           "python", "train.py"], cwd=project, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr)
    job_id = proc.stdout.strip().splitlines()[-1]
    root = cluster.workdir / "jobs" / job_id
    wait_files([root / f"rank-{r}" / "pgid" for r in range(n)])
    return time.monotonic() - started, job_id


def hand_launch(cluster: SlurmCluster, project: Path, out: Path, env: dict, n: int) -> tuple[float, str]:
    started = time.monotonic()
    subprocess.run(["rsync", "-a", f"{project}/", str(out / "code")], check=True)
    script = out / "job.sbatch"
    script.write_text(HAND_SBATCH.format(n=n, out=out))
    job = subprocess.run(["sbatch", "--parsable", str(script)], env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    wait_files([out / f"ran-{job}-{r}" for r in range(n)])
    return time.monotonic() - started, job


def timed(argv: list[str], env: dict, cwd: Path | None = None) -> float:
    started = time.monotonic()
    subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=True)
    return time.monotonic() - started


def in_process_refresh(env: dict, job_id: str) -> float:
    """The status work without the CLI's start-up: one `watch.refresh` of the job, timed in a fresh process."""
    code = ("import sys, time; from orchestrator.cluster.ssh import Session; from orchestrator.jobs import watch; "
            "from orchestrator.jobs.store import Store; s = Store(); j = s.get(sys.argv[1]); t = time.monotonic(); "
            "sess = Session(j.ssh_config); watch.refresh(s, sess, j); sess.close(); print(time.monotonic() - t)")
    out = subprocess.run([sys.executable, "-c", code, job_id], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=2)
    args = parser.parse_args()
    byte_compile_orch()
    cluster = up(args.nodes)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            stand_in = tmp_path / "python"
            stand_in.write_text("#!/bin/sh\nexec sleep 30\n")
            stand_in.chmod(0o755)
            cluster.inventory.write_text(cluster.inventory.read_text().replace(sys.executable, str(stand_in)))
            project = tmp_path / "project"
            (project / "src").mkdir(parents=True)
            for i in range(50):
                (project / "src" / f"mod{i}.py").write_text(f"VALUE = {i}\n" * 50)
            (project / "train.py").write_text("print(1)\n")
            env = {**os.environ, **cluster.env, "ORCH_CLUSTER": str(cluster.inventory),
                   "ORCH_HOME": str(tmp_path / "home")}
            hand_dir = cluster.workdir / "hand"
            hand_dir.mkdir()
            orch_times, hand_times, status_times, squeue_times, refresh_times = [], [], [], [], []
            jitter = random.Random(0)
            for i in range(args.repeat):
                for kind in ("orch", "hand") if i % 2 == 0 else ("hand", "orch"):  # ABBA
                    # slurmctld schedules a submitted batch job on its next pass (about every second): a random
                    # pause before each submission keeps either side from landing on the same phase every time
                    time.sleep(1 + jitter.random())
                    if kind == "hand":
                        seconds, hand_job = hand_launch(cluster, project, hand_dir, env, args.nodes)
                        hand_times.append(seconds)
                        subprocess.run(["scancel", hand_job], env=env)
                        continue
                    seconds, job_id = orch_launch(cluster, project, env, args.nodes)
                    orch_times.append(seconds)
                    status_times.append(timed([sys.executable, "-m", "orchestrator", "status", job_id], env))
                    slurm_id = subprocess.run([sys.executable, "-m", "orchestrator", "status", job_id, "--json"],
                                              env=env, capture_output=True, text=True
                                              ).stdout.split('"job_id": "')[1].split('"')[0]
                    squeue_times.append(timed(["squeue", "-j", slurm_id], env))
                    refresh_times.append(in_process_refresh(env, job_id))
                    subprocess.run([sys.executable, "-m", "orchestrator", "stop", job_id], env=env,
                                   capture_output=True)
            med = {name: statistics.median(values) for name, values in (
                ("orch", orch_times), ("hand", hand_times), ("status", status_times), ("squeue", squeue_times),
                ("refresh", refresh_times))}
            print(f"{args.nodes} nodes, medians of {args.repeat}")
            print(f"launch until every rank runs: orch {med['orch']:.2f} s, hand-written sbatch {med['hand']:.2f} s, "
                  f"ratio {med['orch'] / med['hand']:.2f}x (target <= 1.2)")
            print(f"status of a running job: orch status {med['status'] * 1000:.0f} ms, squeue "
                  f"{med['squeue'] * 1000:.0f} ms, ratio {med['status'] / med['squeue']:.2f}x (target <= 2)")
            print(f"  of which orch's own look at the job (squeue + every rank's files + the store, in process): "
                  f"{med['refresh'] * 1000:.0f} ms, {med['refresh'] / med['squeue']:.2f}x squeue; the rest is the "
                  "Python interpreter and imports")
    finally:
        cluster.down()


if __name__ == "__main__":
    main()
