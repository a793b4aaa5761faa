"""The metric feed's trip home: one probe reads every rank's timing, the new metric lines and the log at once;
the local copy keeps whole lines only, once each, whoever probes; stragglers are judged from the timings."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from orchestrator.cluster.inventory import Node
from orchestrator.cluster.ssh import Session
from orchestrator.jobs import feed, remote, stragglers
from orchestrator.jobs.store import NodeRecord


def _timing(rank: int, compute: float, wait: float = 0.0, node: str = "n0", at: float = 1000.0) -> dict:
    return {"rank": rank, "node": node, "compute_s": compute, "data_wait_s": wait, "step": 5, "time": at}


def test_one_probe_brings_timings_new_metric_lines_and_the_log(tmp_path: Path):
    job_dir = tmp_path / "job"
    (job_dir / "timing").mkdir(parents=True)
    for rank in (0, 1):
        (job_dir / "timing" / f"rank-{rank}.json").write_text(json.dumps(_timing(rank, 0.1 * (rank + 1))))
    lines = [json.dumps({"step": s, "loss": 2.0 / s}) + "\n" for s in (1, 2, 3)]
    (job_dir / "metrics.jsonl").write_text("".join(lines) + '{"step": 4, "lo')  # the worker mid-write
    (job_dir / "log").write_text("hello\n--orch-metrics--\nworld\n")
    node = Node(name="local", host=None, addr="127.0.0.1", gpus=0, workdir=str(tmp_path), python="python3")
    record = NodeRecord(rank=0, name="local", node=node, job_dir=str(job_dir))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(lines[0])  # the first line was brought home before
    with Session() as session:
        probe, log = remote.probe(session, record, 0, feed.metrics_offset(str(run_dir)))
    assert log == b"hello\n--orch-metrics--\nworld\n"  # the log is untouched by the feed's marker
    assert sorted(t["rank"] for t in probe.feed.timings) == [0, 1]
    assert probe.feed.metrics_from == len(lines[0]) and probe.feed.metrics.startswith(lines[1].encode())
    seen = probe.feed
    feed.keep_metrics(str(run_dir), seen.metrics_from, seen.metrics)
    feed.keep_metrics(str(run_dir), seen.metrics_from, seen.metrics)  # a second watcher with the same view
    assert (run_dir / "metrics.jsonl").read_text() == "".join(lines)  # whole lines, once each
    assert feed.series(feed.load_metrics(str(run_dir)))["loss"] == [[1, 2.0], [2, 1.0], [3, 2.0 / 3]]
    feed.keep_timing(str(run_dir), {"local": probe.feed})
    assert set(feed.load_timing(str(run_dir))["ranks"]) == {"0", "1"}


def test_the_probe_samples_the_gpus_when_the_node_has_nvidia_smi_once_per_10_s(tmp_path: Path, monkeypatch):
    """No GPU here: a stand-in prints what `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` prints."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\necho >> {calls}\n"
                                        "case \"$*\" in *--query-gpu=index,utilization.gpu,memory.used,memory.total*"
                                        "--format=csv,noheader,nounits*) printf '0, 87, 30512, 143771\\n1, 3, 5, "
                                        "143771\\n';; *) exit 9;; esac\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    node = Node(name="local", host=None, addr="127.0.0.1", gpus=2, workdir=str(tmp_path), python="python3")
    (tmp_path / "job").mkdir()
    record = NodeRecord(rank=1, name="local", node=node, job_dir=str(tmp_path / "job"))
    with Session() as session:
        probes = [remote.probe(session, record)[0] for _ in range(3)]
        assert calls.read_text().count("\n") == 1  # looks within 10 s reuse its answer
        os.utime(tmp_path / "job" / feed.GPU_CACHE, (time.time() - feed.GPU_CACHE_S, time.time() - feed.GPU_CACHE_S))
        probes.append(remote.probe(session, record)[0])
        assert calls.read_text().count("\n") == 2  # an answer 10 s old is asked again
    for probe in probes:
        assert probe.feed.gpus == ({"index": 0, "util": 87, "mem_used": 30512, "mem_total": 143771},
                                   {"index": 1, "util": 3, "mem_used": 5, "mem_total": 143771})
        assert probe.feed.metrics == b"" and probe.feed.metrics_from == 0  # not node_rank 0's: no metric lines


def test_a_rank_computing_1_3x_the_median_of_the_others_is_a_straggler():
    ranks = {str(r): _timing(r, 0.10, node=f"n{r // 2}") for r in range(4)}
    assert stragglers.find(ranks) == []
    ranks["3"] = _timing(3, 0.135, node="n1")
    found = stragglers.find(ranks)
    assert found == [{"node": "n1", "rank": 3, "ratio": 1.35, "what": "compute"}]
    assert stragglers.describe(found[0]) == "rank 3 on n1: compute 1.35x the median of the others"
    ranks["3"] = _timing(3, 0.125, node="n1")  # 1.25x: within the band
    assert stragglers.find(ranks) == []
    ranks["2"] = _timing(2, 0.1, wait=0.5, node="n1")
    ranks["3"] = _timing(3, 0.5, node="n1", at=900.0)  # stale by 100 s: not compared
    assert stragglers.find(ranks) == [{"node": "n1", "rank": 2, "ratio": None, "what": "data wait"}]
