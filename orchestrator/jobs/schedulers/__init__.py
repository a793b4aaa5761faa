"""The registry of schedulers: one module per scheduler, imported by name the first time a job needs it.

The names are the inventory's `[cluster] scheduler` values (`inventory.SCHEDULERS`, the one registry line a new
scheduler adds beside its module). Each job stores its scheduler's name when it is recorded, before anything is
submitted; a job recorded before that rule counts as `ssh`.
"""

from __future__ import annotations

from importlib import import_module
from typing import cast

from orchestrator.cluster.inventory import SCHEDULERS, Inventory
from orchestrator.jobs.schedulers.base import Scheduler
from orchestrator.jobs.store import JobRecord


def get(name: str) -> Scheduler:
    """The scheduler module registered as `name` (imported on first use)."""
    if name not in SCHEDULERS:
        raise KeyError(f"no scheduler {name!r} (known: {', '.join(SCHEDULERS)})")
    return cast(Scheduler, import_module(f"{__name__}.{name}"))


def for_job(job: JobRecord) -> Scheduler:
    """The scheduler a job was recorded with."""
    return get(job.scheduler)


def for_inventory(inventory: Inventory) -> Scheduler:
    return get(inventory.scheduler)
