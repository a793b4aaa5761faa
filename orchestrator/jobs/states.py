"""Pure decisions about job and node states from what was observed on the nodes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrator.jobs.feed import Seen

PENDING, STARTING, RUNNING = "PENDING", "STARTING", "RUNNING"
SUCCEEDED, FAILED, STOPPED, LOST = "SUCCEEDED", "FAILED", "STOPPED", "LOST"
FINAL = frozenset({SUCCEEDED, FAILED, STOPPED, LOST})
START_GRACE_S = 30  # a node with no pgid file this long after launch is LOST


@dataclass(frozen=True)
class Probe:
    """One look at a node's job folder."""

    reachable: bool
    dir_exists: bool = False
    pgid: int | None = None
    alive: bool = False
    exit_code: int | None = None
    started: float | None = None
    ended: float | None = None
    stopped: bool = False  # `orch stop` ran there before the job wrote an exit code
    stopping: bool = False  # a stop sweep is under way there: not final until it has left nothing behind
    last_line: str = ""
    quiet_s: float | None = None  # seconds since the node's log last grew
    progress: str = ""  # the training worker's progress.json (rank 0's node), as written
    feed: Seen = Seen()  # the metric feed's share of the probe (timings, GPUs, new metric lines)


def node_state(probe: Probe, since_launch: float, previous: str) -> str:
    """The state of one node's share of the job."""
    if previous in FINAL and not probe.reachable:
        return previous
    if not probe.reachable:  # no answer and no TCP connection (or the connection died of missed keep-alives)
        return LOST if previous != STARTING or since_launch > START_GRACE_S else previous
    if probe.stopping:
        return RUNNING
    if probe.exit_code is not None:
        return SUCCEEDED if probe.exit_code == 0 else FAILED
    if probe.alive:
        return RUNNING
    if probe.stopped:
        return STOPPED
    if probe.pgid is None and since_launch <= START_GRACE_S:
        return STARTING
    return LOST


def job_state(node_states: list[str], stop_requested: bool) -> str:
    """The job's state: STOPPED if the user stopped it, FAILED if any node failed, SUCCEEDED if all did."""
    if any(s in (RUNNING, STARTING, PENDING) for s in node_states):
        if stop_requested:
            return RUNNING  # the stop is still in progress
        if FAILED in node_states or LOST in node_states:
            return RUNNING  # fail-fast will stop the rest; the final state follows once they are down
        return RUNNING if RUNNING in node_states else STARTING
    if stop_requested:
        return STOPPED
    if FAILED in node_states:
        return FAILED
    if LOST in node_states:  # a node vanished: the job failed, unless orch lost sight of every node at once
        return LOST if all(s == LOST for s in node_states) else FAILED
    if all(s == SUCCEEDED for s in node_states):
        return SUCCEEDED
    return STOPPED


def needs_fail_fast(node_states: list[str]) -> bool:
    """A node failed or vanished while others still run: the others must be stopped now."""
    broken = any(s in (FAILED, LOST) for s in node_states)
    return broken and any(s in (RUNNING, STARTING) for s in node_states)


def root_cause(names: list[str], ranks: list[int], states: list[str], exit_codes: list[int | None],
               ended: list[float | None] | None = None) -> str | None:
    """Name the node that failed first (by its end time; rank order on ties), else the first one lost."""
    ended = ended or [None] * len(names)
    failed = [i for i, state in enumerate(states) if state == FAILED]
    if failed:
        first = min(failed, key=lambda i: (ended[i] is None, ended[i] or 0.0, ranks[i]))
        return f"node {names[first]} (node_rank {ranks[first]}) exited with {describe_exit(exit_codes[first])}"
    for name, rank, state in zip(names, ranks, states):
        if state == LOST:
            return f"node {name} (node_rank {rank}) was lost (unreachable or its launcher died without exit code)"
    return None


def describe_exit(code: int | None) -> str:
    """`exit code 3`, or `signal 9 (SIGKILL)` for shell-style 128+N codes."""
    if code is None:
        return "no exit code"
    if code > 128:
        import signal

        try:
            return f"exit code {code} (signal {code - 128}, {signal.Signals(code - 128).name})"
        except ValueError:
            pass
    return f"exit code {code}"


_ERROR_LINE = re.compile(r"^\s*(?:\[[^\]]*\]:?\s*)?([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit))\b(:.*)?$")
_LAUNCHER_ERRORS = ("ChildFailedError", "SignalException")
_CLI_ERROR = re.compile(r"^[\w .-]+: error: ")
_RANK_PREFIX = re.compile(r"^\[(?:rank|default)\d+\]:")
_AGENT_LOG = re.compile(r"^\[?[EWIF]\d{4} \d\d:\d\d:\d\d")  # torch's glog-style lines (the torchrun agent)


def last_error(lines: list[str], context: int = 3) -> list[str]:
    """The failed rank's own last exception line and the few traceback lines above it, wherever it sits in the
    log: torchrun's agent output after it (its ChildFailedError traceback and `Root Cause` / `error_file` block,
    its E/W log lines) and anything a wrapper prints later are passed over. A rank's lines (`[rankN]:` prefix)
    win over unprefixed ones; a program's own one-line error (`prog: error: ...`) counts as an exception."""
    kept = [line.rstrip() for line in _without_agent_output(lines)]
    for rank_only in (True, False):
        for index in range(len(kept) - 1, -1, -1):
            line = kept[index]
            if rank_only and not _RANK_PREFIX.match(line):
                continue
            if _CLI_ERROR.search(line):
                return [line]
            match = _ERROR_LINE.match(line)
            if match and not match.group(1).endswith(_LAUNCHER_ERRORS):
                prefix = _RANK_PREFIX.match(line)
                above = [text for text in kept[max(0, index - context):index]
                         if not prefix or text.startswith(prefix.group(0))]
                return [*above, line]
    return []


def _without_agent_output(lines: list[str]) -> list[str]:
    """The log without torchrun's own report of a failed child: the agent's traceback that ends in
    ChildFailedError, the `====` framed block after it, and the agent's glog-style lines."""
    drop: set[int] = set()
    for index, line in enumerate(lines):
        match = _ERROR_LINE.match(line)
        if _RANK_PREFIX.match(line) or not match or not match.group(1).endswith(_LAUNCHER_ERRORS):
            continue
        begin = index  # up through the agent's own frames ("  File ...", indented source) to its "Traceback"
        while begin > 0 and lines[begin - 1].startswith(("  ", "Traceback (most recent call last)")):
            begin -= 1
            if lines[begin].startswith("Traceback"):
                break
        frames = [i for i in range(index + 1, len(lines)) if lines[i].startswith("=====")][:2]
        drop.update(range(begin, (frames[-1] if len(frames) == 2 else index) + 1))
    return [line for index, line in enumerate(lines) if index not in drop and not _AGENT_LOG.match(line)]
