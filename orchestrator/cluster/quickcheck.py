"""Skip a sync that would send nothing: a digest of the project tree, recorded on the node next to its code cache.

rsync over a reused connection still costs ~100 ms per node when nothing changed (a process on each side, a file
list, and rsync's own exit pauses), the largest part of a repeated launch. Before syncing, the controller digests
every entry of the project folder (path, type, size, mtime, mode; ignored files included, `.git` excluded, so the
test is stricter than rsync's own quick check). The node keeps the digest of its last complete sync in
`<cache>.digest`; when it matches, the job's snapshot is taken at once, under the cache's lock, without rsync.

The record is only ever true: every sync removes it first and writes it back at the end, under the cache's lock,
only if no other launch began syncing into the same cache meanwhile (a per-sync token in `<cache>.syncing`). A
cache entry modified after the record was written (a job that wrote into a synced file in place: jobs run from hard
links of the cache; a file added or removed changes its folder) makes the next launch sync again. That test is one
`find -newer ... -quit` on the node: a launch runs it on every node at once.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import socket
import stat
from pathlib import Path

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
                     f"printf %s {shlex.quote(digest)} > {record}; }}")
    return " && ".join(steps)


def stage_if_current(cache: str, digest: str, job_dir: str, code_dir: str) -> str:
    """A command that, under the cache's lock, snapshots the cache into the job's code folder if the cache is at
    `digest`, or exits NOT_CURRENT and touches nothing."""
    record = shlex.quote(cache + ".digest")
    inner = (f"rec=; read -r rec 2>/dev/null < {record}; "  # (no `cat`: launches run this on every node at once)
             f'[ "$rec" = {digest} ] || exit {NOT_CURRENT}; '
             f'[ -z "$(find {shlex.quote(cache)} -newer {record} -print -quit)" ] || exit {NOT_CURRENT}; '
             f"umask 077 && mkdir -p {shlex.quote(job_dir)} && cp -al {shlex.quote(cache)} {shlex.quote(code_dir)}")
    return (f"[ -d {shlex.quote(cache)} ] || exit {NOT_CURRENT}; "
            f"flock {shlex.quote(cache + '.lock')} sh -c {shlex.quote(inner)}")

