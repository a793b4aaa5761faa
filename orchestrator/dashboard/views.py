"""What the dashboard shows, as JSON: read from the store and the run folders only (no SSH: the job's own
watcher keeps them fresh), so a page costs milliseconds and an idle dashboard costs nothing."""

from __future__ import annotations

import time
from pathlib import Path

from orchestrator.dashboard import hangs
from orchestrator.jobs import feed, schedulers, stragglers
from orchestrator.jobs.store import JobRecord, Store


def name_of(job: JobRecord) -> str:
    """A job's short name: its training config, or its command's first words."""
    if job.command[:2] == ["-m", "orchestrator.train"] and len(job.command) > 2:
        return Path(job.command[2]).name
    return " ".join(job.command)[:60]


def summary(job: JobRecord) -> dict:
    """One row of the job list."""
    progress = job.options.get("progress") or {}
    total = progress.get("total")
    return {"id": job.id, "name": name_of(job), "state": job.state, "nodes": [n.name for n in job.nodes],
            "created": job.created, "age_s": round(time.time() - job.created), "root_cause": job.root_cause,
            "progress": round(progress["step"] / total, 4) if total and progress.get("step") is not None else None,
            "scheduler": job.options.get("scheduler")}


def jobs(store: Store, limit: int = 50) -> list[dict]:
    return [summary(job) for job in store.recent(limit)]


def detail(store: Store, job_id: str) -> dict:
    """`orch status --json`'s shape plus stragglers, every rank's timing, GPUs, metrics and hang reports."""
    job = store.get(job_id)
    timing = feed.load_timing(job.run_dir)
    ranks = timing.get("ranks", {})
    found = stragglers.find(ranks)
    marked = {s["rank"] for s in found}
    rank_of_pid = {t["pid"]: t["rank"] for t in ranks.values() if "pid" in t and "rank" in t}
    return {**job.to_json(), "name": name_of(job), "stragglers": found,
            "scheduler_title": schedulers.for_job(job).TITLE,
            "ranks": sorted(({**t, "straggler": t.get("rank") in marked} for t in ranks.values()),
                            key=lambda t: t.get("rank", 0)),
            "gpus": timing.get("gpus", {}), "metrics": feed.series(feed.load_metrics(job.run_dir)),
            "hangs": hangs.reports(job.run_dir, rank_of_pid)}
