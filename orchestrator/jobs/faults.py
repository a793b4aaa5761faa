"""Fault-injection hooks for the reliability tests: inert unless `ORCH_FAILPOINT` names the point."""

from __future__ import annotations

import os
import time
from pathlib import Path

from orchestrator.errors import RemoteError


def failpoint(name: str) -> None:
    """`ORCH_FAILPOINT=after-sync:3` sleeps 3 s there, so a test can kill -9 the launcher at that exact step;
    `ORCH_FAILPOINT=before-observe:@PATH` creates PATH.waiting there and waits (up to 120 s) until PATH exists, so a
    test can act while this process stands exactly there."""
    point, _, value = os.environ.get("ORCH_FAILPOINT", "").partition(":")
    if point != name:
        return
    if not value.startswith("@"):
        time.sleep(float(value or 5))
        return
    gate = Path(value[1:])
    Path(f"{gate}.waiting").touch()
    deadline = time.monotonic() + 120
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def node_failpoint(node: str) -> None:
    """`ORCH_FAILPOINT=start:NODE:S` sleeps S s before starting NODE (the launcher can be killed between two
    nodes' starts); `start-fail:NODE` makes NODE's start fail after the others had 1.5 s to start."""
    point, _, rest = os.environ.get("ORCH_FAILPOINT", "").partition(":")
    name, _, seconds = rest.partition(":")
    if point == "start" and name == node:
        time.sleep(float(seconds or 5))
    elif point == "start-fail" and name == node:
        time.sleep(1.5)
        raise RemoteError(f"{node}: could not start the job (failpoint start-fail)")
