"""Where orch keeps its state on the controller: $ORCH_HOME, else the XDG state dir. It is private to its user:
the folder is 700 and the commands that write there run under umask 077 (`private_files`)."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def orch_home() -> Path:
    """The state folder (job database, run folders); created on first use, mode 700."""
    if os.environ.get("ORCH_HOME"):
        home = Path(os.environ["ORCH_HOME"])
    else:
        state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        home = Path(state) / "orch"
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(home)
    return home


def _tighten(home: Path) -> None:
    """Make an existing state folder (one an older orch left 755) 700, if it is this user's own: never a shared
    folder such as /tmp (sticky) that $ORCH_HOME happens to name."""
    info = home.stat()
    if info.st_mode & 0o077 and info.st_uid == os.getuid() and not info.st_mode & stat.S_ISVTX:
        home.chmod(0o700)


def private_files() -> None:
    """From here on, files and folders this process (and what it starts: the supervisor, rsync, SQLite, the local
    node's job) creates are its user's only: 600 and 700."""
    os.umask(0o077)
