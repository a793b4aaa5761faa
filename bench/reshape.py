"""Benchmark issue 19: what converting a ZeRO checkpoint to DeepSpeed's universal form costs, per GB of ZeRO state.

A resume on another world size converts each DeepSpeed checkpoint once (`orchestrator.train.reshape.ensure_universal`,
DeepSpeed's `ds_to_universal` under a lock, cached beside the checkpoint). This builds a Llama (hidden 512, 4 layers by
default; nothing from a hub), trains it one step with full fine-tuning under ZeRO-2 on 2 processes (`orch train`,
default flags otherwise) and saves checkpoint-1, then in a fresh child process times the conversion (default path)
and, as the baseline measured in the same run, a plain copy of the same ZeRO folder (`shutil.copytree`: the least
any conversion that reads and writes every byte costs). Reported: source GB, seconds, seconds per GB, the
universal folder's size (the disk cost of the cache), and the ratio conversion / copy.

    python bench/reshape.py [--hidden 512] [--layers 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import ZERO2_FULL, zero2_project  # noqa: E402


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def build(work: Path, hidden: int, layers: int) -> Path:
    """The demo project with a bigger base model, trained one step: returns checkpoint-1."""
    zero2_project(work, hidden, layers)
    (work / "bench.yaml").write_text(ZERO2_FULL.format(steps=1, save_steps=1))
    subprocess.run([sys.executable, "-m", "orchestrator", "train", "bench.yaml", "--nproc-per-node", "2"], cwd=work,
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return work / "out" / "checkpoint-1"


def child(checkpoint: str, kind: str) -> None:
    """One measurement in a fresh process: the conversion (cache removed first) or the copy baseline."""
    from orchestrator.train.reshape import deepspeed_tag, ensure_universal

    folder = Path(checkpoint)
    tag = deepspeed_tag(folder)
    for stale in (folder / f"{tag}_universal", folder / "copy"):
        shutil.rmtree(stale, ignore_errors=True)
    began = time.perf_counter()
    if kind == "convert":
        written = ensure_universal(folder, log=lambda line: None)
    else:
        written = shutil.copytree(folder / tag, folder / "copy")
    seconds = time.perf_counter() - began
    print(json.dumps({"seconds": seconds, "bytes": folder_bytes(Path(written))}))


def measure(checkpoint: Path, kind: str) -> tuple[float, int]:
    out = subprocess.run([sys.executable, __file__, "--child", str(checkpoint), kind], check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["seconds"], result["bytes"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("CHECKPOINT", "KIND"))
    ns = parser.parse_args()
    if ns.child:
        return child(*ns.child)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = build(Path(tmp) / "llm", ns.hidden, ns.layers)
        tag = (checkpoint / "latest").read_text().strip()
        source = folder_bytes(checkpoint / tag)
        convert, copy = [], []
        for _ in range(ns.repeats):  # alternating, best of each
            seconds, universal = measure(checkpoint, "convert")
            convert.append(seconds)
            copy.append(measure(checkpoint, "copy")[0])
        gb = source / 1e9
        print(f"ZeRO-2 checkpoint (2 ranks, full fine-tune, hidden {ns.hidden} x {ns.layers} layers): "
              f"{source / 2**20:.1f} MiB of ZeRO state")
        print(f"conversion to universal (default): best {min(convert):.2f} s = {min(convert) / gb:.1f} s per GB; "
              f"cache on disk {universal / 2**20:.1f} MiB ({universal / source:.2f}x the source)")
        print(f"baseline, a copy of the same folder (page cache warm): best {min(copy):.2f} s = {min(copy) / gb:.1f} s per GB; "
              f"ratio conversion/copy {min(convert) / min(copy):.1f}x")


if __name__ == "__main__":
    main()
