"""Stragglers: ranks whose recent compute (or data wait) is >= 1.3x the median of the other ranks'.

With DDP every rank's end-to-end step time is the same (all wait at the all-reduce), so the worker times what
differs per rank: forward/backward compute outside the collectives, and the wait for data (orchestrator.train.feed).
"""

from __future__ import annotations

from orchestrator.jobs.feed import load_timing

RATIO = 1.3
MIN_GAP_S = {"compute": 0.001, "data wait": 0.02}  # below this absolute gap a ratio of tiny numbers is noise
STALE_S = 60  # a rank whose timing is this much older than the newest one is not compared


def find(ranks: dict[str, dict]) -> list[dict]:
    """`[{"node", "rank", "ratio", "what"}]`, worst first, from timing.json's `ranks`."""
    newest = max((t.get("time") or 0 for t in ranks.values()), default=0)
    fresh = [t for t in ranks.values() if (t.get("time") or 0) >= newest - STALE_S]
    found = []
    for what, key in (("compute", "compute_s"), ("data wait", "data_wait_s")):
        values = [(t, t.get(key)) for t in fresh if isinstance(t.get(key), (int, float))]
        if len(values) < 2:
            continue
        ordered = sorted(range(len(values)), key=lambda i: values[i][1])
        sorted_values = [values[i][1] for i in ordered]
        position = {index: p for p, index in enumerate(ordered)}
        for index, (timing, value) in enumerate(values):
            median = median_without(sorted_values, position[index])
            if median > 0 and value >= RATIO * median and value - median >= MIN_GAP_S[what]:
                found.append({"node": timing.get("node", ""), "rank": timing.get("rank"),
                              "ratio": round(value / median, 2), "what": what})
            elif median == 0 and value >= MIN_GAP_S[what] * 10:
                found.append({"node": timing.get("node", ""), "rank": timing.get("rank"), "ratio": None,
                              "what": what})
    return sorted(found, key=lambda s: -(s["ratio"] or float("inf")))


def median_without(ordered: list[float], skip: int) -> float:
    """The median of sorted `ordered` without its element at `skip` (O(1): 512 ranks each compare to the rest)."""
    n = len(ordered) - 1

    def at(k: int) -> float:
        return ordered[k] if k < skip else ordered[k + 1]

    return at(n // 2) if n % 2 else (at(n // 2 - 1) + at(n // 2)) / 2


def describe(straggler: dict) -> str:
    """`rank 3 on node2: compute 1.8x the median of the others`."""
    ratio = f"{straggler['ratio']}x" if straggler["ratio"] else "far above"
    return f"rank {straggler['rank']} on {straggler['node']}: {straggler['what']} {ratio} the median of the others"


def of_run(run_dir: str) -> list[dict]:
    """The stragglers in a job's kept timing (its run folder)."""
    return find(load_timing(run_dir).get("ranks", {}))
