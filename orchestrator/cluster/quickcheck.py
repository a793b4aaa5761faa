"""Skip a sync that would send nothing: a digest of the project tree, recorded on the node next to its code cache.

rsync over a reused connection still costs ~100 ms per node when nothing changed (a process on each side, a file
list, and rsync's own exit pauses), the largest part of a repeated launch. Before syncing, the controller digests
every entry of the project folder (path, type, size, mtime, mode; ignored files included, `.git` excluded, so the
test is stricter than rsync's own quick check). The node keeps the digest of its last complete sync in
`<cache>.digest`; when it matches, the job's snapshot is taken at once, under the cache's lock, without rsync.

The record is only ever true: every sync removes it first and writes it back at the end, under the cache's lock,
only if no other launch began syncing into the same cache meanwhile (a per-sync token in `<cache>.syncing`). It
also holds a checksum of the cache's own listing (path, type, size, mtime, mode): a job that wrote into a synced
file in place (jobs run from hard links of the cache) changes it, and the next launch syncs again.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import socket
import stat
from pathlib import Path

# the node's own view of its cache: any in-place change to a cached file changes this line
NODE_LISTING = "find . -printf '%p %y %s %T@ %m\\n' | LC_ALL=C sort | cksum"
MAX_ENTRIES = 20_000  # a bigger tree (a virtualenv, a dataset folder kept in the project) is left to rsync alone
NOT_CURRENT = 75  # exit status of the staging command when the node's cache is not at this digest


def tree_digest(root: Path, named: tuple[str, ...] = (), filters: tuple[str, ...] = ()) -> str | None:
    """A digest of everything under `root` that a sync could send, with the settings that decide what it sends;
    None when the tree has more than MAX_ENTRIES entries (then every launch syncs)."""
    digest = hashlib.sha256()
    for part in ("orch-tree-1", socket.gethostname(), str(root.resolve()), *filters, "--", *named):
        digest.update(part.encode() + b"\0")
    count = 0
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return None
        for entry in entries:
            if entry.name == ".git":
                continue
            count += 1
            if count > MAX_ENTRIES:
                return None
            info = entry.stat(follow_symlinks=False)
            relative = os.path.relpath(entry.path, root)
            digest.update(f"{relative}\0{stat.S_IFMT(info.st_mode)}\0{info.st_mode & 0o7777}\0{info.st_size}\0"
                          f"{info.st_mtime_ns}\n".encode())
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
    return digest.hexdigest()


def sync_script(cache: str, token: str, first: bool, digest: str | None) -> str:
    """The shell script around one rsync pass on the node (rsync's arguments arrive as "$@"), run under the
    cache's lock: the first pass of a sync forgets the old digest and claims the cache with `token`; the last
    pass records `digest` if the claim still holds."""
    record, claim = shlex.quote(cache + ".digest"), shlex.quote(cache + ".syncing")
    steps = [f"rm -f {record} && printf %s {shlex.quote(token)} > {claim}"] if first else []
    steps.append('rsync "$@"')
    if digest:
        steps.append(f'{{ [ "$(cat {claim} 2>/dev/null)" != {shlex.quote(token)} ] || '
                     f"printf '%s %s' {shlex.quote(digest)} \"$({_listing(cache)})\" > {record}; }}")
    return " && ".join(steps)


def stage_if_current(cache: str, digest: str, job_dir: str, code_dir: str) -> str:
    """A command that, under the cache's lock, snapshots the cache into the job's code folder if the cache is at
    `digest`, or exits NOT_CURRENT and touches nothing."""
    record = shlex.quote(cache + ".digest")
    inner = (f'[ "$(cat {record} 2>/dev/null)" = "{digest} $({_listing(cache)})" ] || exit {NOT_CURRENT}; '
             f"umask 077 && mkdir -p {shlex.quote(job_dir)} && cp -al {shlex.quote(cache)} {shlex.quote(code_dir)}")
    return f"mkdir -p {shlex.quote(cache)} && flock {shlex.quote(cache + '.lock')} sh -c {shlex.quote(inner)}"


def _listing(cache: str) -> str:
    return f"cd {shlex.quote(cache)} && {NODE_LISTING}"
