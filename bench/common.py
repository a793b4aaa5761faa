"""What the benchmarks share."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "orchestrator"


def byte_compile_orch() -> None:
    """Byte-compile orch as `pip install` leaves it: an editable install (or PYTHONDONTWRITEBYTECODE) would compile
    its modules again on every command, which is not what a user's installed orch does."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(PACKAGE)], check=True, capture_output=True)
