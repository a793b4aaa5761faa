"""The worker's metric feed brought home: the probe's shell part, and what it keeps in the local run folder.

Each probe (one round trip per node, or one per job where a scheduler looks at all ranks at once) prints every
rank's timing file, the node's GPUs when it has `nvidia-smi` (run at most once per GPU_CACHE_S seconds per job
folder: every look reuses its answer meanwhile), and on node_rank 0 the new bytes of `metrics.jsonl` from where the
local copy ends. Kept here:
- `<run dir>/metrics.jsonl`: the worker's lines, whole lines only (appends from concurrent watchers dedup by
  offset under a lock);
- `<run dir>/timing.json`: `{"ranks": {rank: timing}, "gpus": {node: [{index, util, mem_used, mem_total}]}}`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from orchestrator.jobs.vault import write_private

METRICS_MARK = b"\n--orch-metrics--\n"
METRICS_CHUNK = 1 << 20
METRICS_FILE = "metrics.jsonl"
TIMING_FILE = "timing.json"
GPU_QUERY = "index,utilization.gpu,memory.used,memory.total"
GPU_CACHE = ".gpus"  # nvidia-smi's last answer, in the job folder: probes within GPU_CACHE_S seconds reuse it
GPU_CACHE_S = 10


@dataclass(frozen=True)
class Seen:
    """What one probe of a node brought of the feed."""

    timings: tuple = ()  # each rank's timing file on this node (dicts)
    gpus: tuple = ()  # nvidia-smi's view of the node's GPUs (dicts), when it has one
    metrics_from: int = 0  # where in metrics.jsonl `metrics` begins
    metrics: bytes = b""  # new bytes of metrics.jsonl (node_rank 0, when asked for)


def probe_snippet(metrics_offset: int | None) -> tuple[str, str]:
    """(fact lines for the probe's head, the metrics part that goes before the log) in the job folder's cwd."""
    fresh = f"{GPU_CACHE}.$$"
    facts = ("for f in timing/rank-*.json; do [ -f \"$f\" ] && echo \"timing=$(head -c 4000 \"$f\")\"; done; "
             f"if [ $(( $(date +%s) - $(stat -c %Y {GPU_CACHE} 2>/dev/null || echo 0) )) -ge {GPU_CACHE_S} ]; then "
             "{ command -v nvidia-smi >/dev/null 2>&1 && timeout 5 nvidia-smi "
             f"--query-gpu={GPU_QUERY} --format=csv,noheader,nounits; }} >{fresh} 2>/dev/null; "
             f"mv -f {fresh} {GPU_CACHE} 2>/dev/null; fi; sed 's/^/gpu=/' {GPU_CACHE} 2>/dev/null")
    if metrics_offset is None:
        return facts, ""
    return facts, (f"printf {shlex.quote(METRICS_MARK.decode() + str(int(metrics_offset)) + chr(10))}; "
                   f"tail -c +{int(metrics_offset) + 1} {METRICS_FILE} 2>/dev/null | head -c {METRICS_CHUNK}")


def parse(head: bytes) -> tuple[list[str], Seen]:
    """(the probe's fact lines, what they and the metrics part after them brought of the feed)."""
    facts, _, rest = head.partition(METRICS_MARK)
    offset, _, metrics = rest.partition(b"\n")
    lines = facts.decode("utf-8", "replace").splitlines()
    timings, gpus = _timings_and_gpus(lines)
    return lines, Seen(timings, gpus, int(offset or 0), metrics)


def _timings_and_gpus(lines: list[str]) -> tuple[tuple[dict, ...], tuple[dict, ...]]:
    """(timings, gpus) from the probe's `timing=` and `gpu=` lines; a half-written one is skipped."""
    timings, gpus = [], []
    for line in lines:
        if line.startswith("timing="):
            try:
                timings.append(json.loads(line[7:]))
            except ValueError:
                continue
        elif line.startswith("gpu="):
            cells = [c.strip() for c in line[4:].split(",")]
            try:
                index, util, used, total = (int(float(c)) for c in cells[:4])
            except ValueError:
                continue
            gpus.append({"index": index, "util": util, "mem_used": used, "mem_total": total})
    return tuple(timings), tuple(gpus)


def metrics_offset(run_dir: str) -> int:
    """Where the local copy of metrics.jsonl ends (the next probe reads from there)."""
    try:
        return os.path.getsize(Path(run_dir) / METRICS_FILE)
    except OSError:
        return 0


def keep_metrics(run_dir: str, offset: int, chunk: bytes) -> None:
    """Append the whole lines of `chunk` (read from `offset`) to the local copy, skipping what another watcher
    appended meanwhile."""
    whole = chunk[:chunk.rfind(b"\n") + 1]
    if not whole:
        return
    path = Path(run_dir) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        size = f.seek(0, os.SEEK_END)
        if offset <= size < offset + len(whole):
            f.write(whole[size - offset:])


def keep(run_dir: str, seen: dict[str, Seen]) -> None:
    """Keep what the probes of a job's nodes (`{node: Seen}`) brought: new metric lines, timings, GPUs."""
    for node_seen in seen.values():
        if node_seen.metrics:
            keep_metrics(run_dir, node_seen.metrics_from, node_seen.metrics)
    keep_timing(run_dir, {node: s for node, s in seen.items() if s.timings or s.gpus})


def keep_timing(run_dir: str, seen: dict[str, Seen]) -> None:
    """Merge every node's timings and GPUs into timing.json (ranks not seen this time keep their numbers)."""
    if not seen:  # nothing new (a plain `-- CMD` job, or no rank has timed a step yet): no read, no write
        return
    path = Path(run_dir) / TIMING_FILE
    current = load_timing(run_dir)
    ranks, gpus = dict(current.get("ranks", {})), dict(current.get("gpus", {}))
    for node, node_seen in seen.items():
        for timing in node_seen.timings:
            if "rank" in timing:
                ranks[str(timing["rank"])] = {**timing, "node": timing.get("node") or node}
        if node_seen.gpus:
            gpus[node] = list(node_seen.gpus)
    fresh = {"ranks": ranks, "gpus": gpus}
    if fresh == current or not path.parent.is_dir():
        return
    write_private(path, json.dumps(fresh))  # a per-process temporary name: two watchers never share one


def load_timing(run_dir: str) -> dict:
    try:
        return json.loads((Path(run_dir) / TIMING_FILE).read_text())
    except (OSError, ValueError):
        return {}


def load_metrics(run_dir: str) -> list[dict]:
    """The kept metric lines, in order."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def series(rows: list[dict]) -> dict[str, list[list[float]]]:
    """`{metric: [[step, value], ...]}` for every number logged (step, epoch and time are the axes, not series)."""
    out: dict[str, list[list[float]]] = {}
    for row in rows:
        step = row.get("step")
        for name, value in row.items():
            if name not in ("step", "epoch", "time") and isinstance(value, (int, float)):
                out.setdefault(name, []).append([step, value])
    return out
