"""Where orch keeps its state on the controller: $ORCH_HOME, else the XDG state dir."""

from __future__ import annotations

import os
from pathlib import Path


def orch_home() -> Path:
    """The state folder (job database, run folders); created on first use."""
    if os.environ.get("ORCH_HOME"):
        home = Path(os.environ["ORCH_HOME"])
    else:
        state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        home = Path(state) / "orch"
    home.mkdir(parents=True, exist_ok=True)
    return home
