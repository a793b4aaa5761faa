"""Versioned output folders (`versioned_output_dir: true`, ms-swift's `add_output_dir_suffix`): each run writes to
`<output_dir>/v<N>-<YYYYmmdd-HHMMSS>`, N counting up from the folders already there.

Every rank of a run, and a restart of the same job, must land in the same folder: the choice is recorded under
`<output_dir>/.runs/<run id>` (the job id orch launched, else torchrun's run id), made once under a file lock.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from pathlib import Path

_VERSION = re.compile(r"^v(\d+)-")


def run_id() -> str:
    """What all ranks and restarts of one run share: `$ORCH_JOB_ID`, else `$TORCHELASTIC_RUN_ID`, else the parent
    process (a run without torchrun)."""
    return os.environ.get("ORCH_JOB_ID") or os.environ.get("TORCHELASTIC_RUN_ID") or f"ppid-{os.getppid()}"


def versioned(base: str) -> str:
    """The versioned folder of this run under `base` (created on first use)."""
    runs = Path(base) / ".runs"
    runs.mkdir(parents=True, exist_ok=True)
    marker = runs / re.sub(r"[^A-Za-z0-9._-]", "_", run_id())
    fd = os.open(runs / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if marker.is_file():
            return str(Path(base) / marker.read_text().strip())
        taken = [int(m.group(1)) for p in Path(base).iterdir() if (m := _VERSION.match(p.name))]
        name = f"v{max(taken, default=-1) + 1}-{time.strftime('%Y%m%d-%H%M%S')}"
        (Path(base) / name).mkdir()
        marker.write_text(name)
        return str(Path(base) / name)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
