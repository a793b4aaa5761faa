"""A progress bar for tokenizing: one process draws it (rank 0 of a job, or `orch data index`), on stderr.

On a terminal it redraws one line; in a log (a launched job's output) it prints a line at every 25%.
"""

from __future__ import annotations

import os
import sys
import time


class Progress:
    """`update(done)` out of `total` units of `label`; silent unless `enabled`."""

    def __init__(self, label: str, total: int, enabled: bool | None = None) -> None:
        self.label, self.total = label, max(total, 1)
        self.enabled = int(os.environ.get("RANK", "0")) == 0 if enabled is None else enabled
        self.tty = sys.stderr.isatty()
        self.start, self.shown = time.monotonic(), -1

    def update(self, done: int) -> None:
        """Show `done / total`, as a bar on a terminal or a line per quarter in a log."""
        if not self.enabled:
            return
        pct = min(100, done * 100 // self.total)
        step = pct if self.tty else pct // 25 * 25
        if step == self.shown:
            return
        self.shown = step
        elapsed = time.monotonic() - self.start
        bar = "#" * (pct // 5) + "." * (20 - pct // 5)
        text = f"tokenizing {self.label} [{bar}] {pct:3d}% {elapsed:.1f}s"
        sys.stderr.write(f"\r{text}" + ("\n" if pct == 100 else "") if self.tty else text + "\n")
        sys.stderr.flush()
