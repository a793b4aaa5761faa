"""Hang reports (`<run dir>/hang-*.txt`) with ranks grouped by identical stacks."""

from __future__ import annotations

import re
from pathlib import Path

_THREAD_ID = re.compile(r"0x[0-9a-f]+")
_FRAME = re.compile(r'File "([^"]+)", line (\d+) in (\S+)')


def parse(text: str) -> list[tuple[str, int, str]]:
    """`[(node, pid, stack text)]` from a report: `===== node` sections of `== pid P: cmdline` dumps."""
    found, node = [], ""
    pid, lines = None, []

    def close() -> None:
        if pid is not None:
            found.append((node, pid, "\n".join(lines).strip()))

    for line in text.splitlines():
        if line.startswith("===== "):
            close()
            node, pid, lines = line[6:].strip(), None, []
        elif line.startswith("== pid "):
            close()
            match = re.match(r"== pid (\d+)", line)
            pid, lines = (int(match.group(1)) if match else None), []
        elif pid is not None:
            lines.append(line)
    close()
    return found


def where(stack: str) -> str:
    """The innermost frame (faulthandler and py-spy print the most recent call first): `func at file.py:88`."""
    for line in stack.splitlines():
        match = _FRAME.search(line)
        if match:
            return f"{match.group(3)} at {Path(match.group(1)).name}:{match.group(2)}"
        spy = re.match(r"\s+(\S+) \((.+):(\d+)\)", line)  # py-spy: `    func (file.py:88)`
        if spy:
            return f"{spy.group(1)} at {Path(spy.group(2)).name}:{spy.group(3)}"
    return stack.splitlines()[0] if stack else "(no stack)"


def group(dumps: list[tuple[str, int, str]], rank_of_pid: dict[int, int]) -> list[dict]:
    """`[{"who": ["rank 0", ...], "where", "stack"}]`, one entry per distinct stack, most processes first."""
    groups: dict[str, dict] = {}
    for node, pid, stack in dumps:
        key = _THREAD_ID.sub("0x", stack)
        rank = rank_of_pid.get(pid)
        who = f"rank {rank}" if rank is not None else f"{node} pid {pid} (launcher)"
        entry = groups.setdefault(key, {"who": [], "where": where(stack), "stack": stack})
        entry["who"].append(who)
    return sorted(groups.values(), key=lambda g: -len(g["who"]))


def reports(run_dir: str, rank_of_pid: dict[int, int]) -> list[dict]:
    """Every hang report of the job, newest first: `{"name", "groups"}`."""
    paths = sorted(Path(run_dir).glob("hang-*.txt"), reverse=True)
    return [{"name": p.name, "groups": group(parse(p.read_text(errors="replace")), rank_of_pid)} for p in paths]
