"""Benchmark issue 19's `checkpoint_copies: every_node`: what copying each checkpoint to every node costs, in disk
and in time, against the default (`own_node`: each node keeps what its own ranks wrote), in the same run.

Two "nodes" without a shared filesystem on this machine: two torchrun agents (`--nnodes 2`, one process each, gloo
over loopback), each with its own output folder (`ORCH_OUTPUT_ROOT`) and `ORCH_SHARED_FS=0`, as `orch launch`
starts them. The model is a Llama (hidden 512, 4 layers by default; nothing from a hub), fully fine-tuned under
ZeRO-2, saving every 2 steps. Reported, best of `--repeats` runs of each option (alternating):
- disk: bytes of checkpoints per node with and without the option (ratio);
- the exchange: bytes each node received per checkpoint and seconds, as seconds per GB (from `orch_copies.json`);
- time: the training's own runtime (HF's `train_runtime`: steps, saves, and the waits for the previous exchange)
  and the whole run's wall time (with the wait for the last exchange), ratios option / default.

    python bench/copies.py [--hidden 512] [--layers 4] [--steps 6] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import ZERO2_FULL, zero2_project  # noqa: E402
from bench.reshape import folder_bytes  # noqa: E402

RUNTIME = re.compile(r"'train_runtime': '([\d.]+)'")


def build(work: Path, hidden: int, layers: int, steps: int) -> None:
    """The demo project with a bigger base model and one config per option."""
    zero2_project(work, hidden, layers)
    for copies in ("own_node", "every_node"):
        (work / f"{copies}.yaml").write_text(ZERO2_FULL.format(steps=steps, save_steps=2)
                                             + f"checkpoint_copies: {copies}\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(work: Path, copies: str) -> dict:
    """One 2-"node" training run; returns its times and each node's checkpoints."""
    port, nodes = free_port(), [work / "runs" / copies / f"node{rank}" for rank in range(2)]
    for node in nodes:
        shutil.rmtree(node, ignore_errors=True)
        node.mkdir(parents=True)
    began = time.perf_counter()
    agents = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node",
         "1", "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "orchestrator.train", f"{copies}.yaml"],
        cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ORCH_SHARED_FS": "0", "ORCH_OUTPUT_ROOT": str(node)})
        for rank, node in enumerate(nodes)]
    said = [agent.communicate()[0] for agent in agents]
    wall = time.perf_counter() - began
    for agent, text in zip(agents, said):
        if agent.returncode:
            raise SystemExit(text[-5000:])
    exchanges = [json.loads(p.read_text()) for node in nodes for p in (node / "out").glob("checkpoint-*/orch_copies.json")]
    return {"wall": wall, "runtime": float(RUNTIME.findall(said[0])[-1]),
            "disk": [sum(folder_bytes(p) for p in (node / "out").glob("checkpoint-*")) for node in nodes],
            "checkpoints": len(list((nodes[0] / "out").glob("checkpoint-*"))), "exchanges": exchanges}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "llm"
        build(work, ns.hidden, ns.layers, ns.steps)
        results: dict[str, list[dict]] = {"own_node": [], "every_node": []}
        for _ in range(ns.repeats):  # alternating
            for copies in results:
                results[copies].append(run(work, copies))
    off, on = (min(results[c], key=lambda r: r["runtime"]) for c in ("own_node", "every_node"))
    off_wall, on_wall = (min(r["wall"] for r in results[c]) for c in ("own_node", "every_node"))
    received = sum(e["bytes_received"] for e in on["exchanges"])
    seconds = sum(e["seconds"] for e in on["exchanges"])
    mib = 2**20
    print(f"ZeRO-2 full fine-tune, hidden {ns.hidden} x {ns.layers} layers, 2 nodes x 1 process (loopback), "
          f"{ns.steps} steps, {on['checkpoints']} checkpoints, best of {ns.repeats}")
    print(f"disk per node: default (own_node) {off['disk'][0] / mib:.0f} / {off['disk'][1] / mib:.0f} MiB; "
          f"every_node {on['disk'][0] / mib:.0f} / {on['disk'][1] / mib:.0f} MiB "
          f"({sum(on['disk']) / sum(off['disk']):.2f}x the default)")
    print(f"exchange: {len(on['exchanges'])} (checkpoint x node), {received / mib / len(on['exchanges']):.1f} MiB "
          f"received each, {seconds / len(on['exchanges']):.2f} s each = {seconds / (received / 1e9):.1f} s per GB")
    print(f"training runtime (steps, saves, waits): default {off['runtime']:.2f} s, every_node {on['runtime']:.2f} s "
          f"= {on['runtime'] / off['runtime']:.2f}x; whole run's wall time {off_wall:.1f} s vs {on_wall:.1f} s "
          f"= {on_wall / off_wall:.2f}x")


if __name__ == "__main__":
    main()
