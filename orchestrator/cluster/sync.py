"""Send a project folder to a node with rsync over the node's reused SSH connection.

Incremental: rsync sends only changed files into a per-project cache on the node; honours `.gitignore` files (at
every level) and an `.orchignore`, and never sends `.git`. A flock on the cache keeps two launches of the same
project from interleaving. The job then hard-links a snapshot of the cache (see jobs/remote.py).
"""

from __future__ import annotations

import posixpath
import re
import secrets
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from orchestrator.cluster import quickcheck
from orchestrator.cluster.inventory import Node
from orchestrator.cluster.ssh import Session
from orchestrator.errors import RemoteError

FILTERS = ["--exclude=.git/", "--filter=:- .gitignore", "--filter=:- .orchignore"]
# copies are their user's only (600/700, execute bits kept): a project's .env or key file is no one else's to read
PRIVATE = "--chmod=go="


@dataclass(frozen=True)
class SyncStats:
    """What one rsync sent."""

    node: str
    files_sent: list[str]
    bytes_sent: int
    up_to_date: bool = False  # the node's cache already held this exact tree: no rsync ran (see quickcheck)


def cache_dir(node: Node, project_name: str) -> str:
    """Where a project's synced files live on a node, relative to its login home or absolute."""
    return posixpath.join(node.workdir, "code", project_name)


def _remote(session: Session, node: Node, path: str) -> tuple[list[str], str]:
    """rsync's transport options and the path spec for a folder on `node` (plain path for the local node)."""
    if node.is_local:
        return [], path
    return ["-e", session.rsync_shell(node)], f"{node.host}:{path}"


def rsync_argv(session: Session, node: Node, source: Path, target: str, named: bool = False,
               script: str = 'rsync "$@"') -> list[str]:
    """The rsync command line: same ssh as commands, a locked target, itemised output and stats. With `named`,
    the paths listed on stdin (NUL-separated, relative to `source`) are sent whatever the ignore files say.
    `script` runs on the receiving side under the lock, with rsync's arguments as "$@" (see quickcheck)."""
    lock = shlex.quote(target + ".lock")
    selection = ["-r", "--from0", "--files-from=-"] if named else ["--delete", *FILTERS]
    options = ["-a", PRIVATE, "--itemize-changes", "--stats", *selection]
    if node.is_local:
        Path(target).mkdir(parents=True, exist_ok=True)
        return ["flock", target + ".lock", "sh", "-c", script, "sh", *options, f"{source}/", f"{target}/"]
    transport, spec = _remote(session, node, target)
    remote_rsync = f"mkdir -p {shlex.quote(target)} && flock {lock} sh -c {shlex.quote(script)} sh"
    return ["rsync", *options, *transport, f"--rsync-path={remote_rsync}", f"{source}/", f"{spec}/"]


def parse_stats(node: str, output: str) -> SyncStats:
    """Files rsync sent (`>f` itemised lines) and the bytes it reports as sent."""
    files = [line.split(" ", 1)[1] for line in output.splitlines() if line.startswith((">f", "<f"))]
    match = re.search(r"Total bytes sent: ([\d,]+)", output)
    return SyncStats(node, files, int(match.group(1).replace(",", "")) if match else 0)


def sync(session: Session, node: Node, source: Path, target: str, also: tuple[str, ...] = (),
         digest: str | None = None) -> SyncStats:
    """rsync `source/` to `target/` on `node`; raise RemoteError naming the node on failure.

    `also` (paths relative to `source`) are sent by a second pass even when `.gitignore`/`.orchignore` leave them
    out, and only they: rsync filters cannot re-include one file of an ignored folder without its neighbours.
    `digest` (quickcheck.tree_digest of `source`) is recorded on the node once the sync is complete."""
    token = secrets.token_hex(8)
    first = quickcheck.sync_script(target, token, first=True, digest=None if also else digest)
    stats = _run(node, rsync_argv(session, node, source, target, script=first), f"sync of {source}")
    if not also:
        return stats
    listing = b"".join(path.encode() + b"\0" for path in also)
    last = quickcheck.sync_script(target, token, first=False, digest=digest)
    extra = _run(node, rsync_argv(session, node, source, target, named=True, script=last),
                 f"sync of {', '.join(also)}", listing)
    return SyncStats(node.name, stats.files_sent + extra.files_sent, stats.bytes_sent + extra.bytes_sent)


def pull(session: Session, node: Node, source: str, target: Path, files: list[str]) -> SyncStats:
    """Copy `files` (paths relative to `source/` on `node`) into `target/`, keeping their folders."""
    target.mkdir(parents=True, exist_ok=True)
    transport, spec = _remote(session, node, source)
    argv = ["rsync", "-a", PRIVATE, "--itemize-changes", "--stats", "--from0", "--files-from=-", *transport, f"{spec}/",
            f"{target}/"]
    return _run(node, argv, f"copy of {source}", stdin=b"\0".join(f.encode() for f in files))


def _run(node: Node, argv: list[str], what: str, stdin: bytes | None = None) -> SyncStats:
    cwd = str(Path.home()) if node.is_local else None
    proc = subprocess.run(argv, capture_output=True, cwd=cwd, input=stdin,
                          stdin=subprocess.DEVNULL if stdin is None else None)
    out, err = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        last = err.splitlines()[-1] if err else f"rsync exited {proc.returncode}"
        raise RemoteError(f"node {node.name}: {what} failed: {last}")
    return parse_stats(node.name, out)
