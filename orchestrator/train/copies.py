"""`checkpoint_copies: every_node`: without a shared filesystem, every node ends up with a whole copy of each
checkpoint, so losing a node loses no checkpoint whose copies were done.

Without a shared filesystem each node holds only what its own ranks wrote (DeepSpeed: their ZeRO partitions); a
restart on fewer nodes then cannot re-partition a checkpoint whose other partitions died with a node. With this
option, after each checkpoint is marked complete, each node's local rank 0 (its "leader") exchanges the checkpoint's
files with the other leaders in a background thread, over a gloo process group of the leaders alone (created once at
the start, by every rank): the leaders gather each other's listings (relative path, size), then each file some leader
lacks is broadcast from the first leader that has it (ZeRO optimizer partitions last: `send_order`) in bounded chunks
(`CHUNK` bytes, so memory stays bounded), written under a temporary name and renamed when whole, so a half-copied
file never counts. Then the leader writes `orch_copies.json` (seconds, bytes and files received) and logs one line.
Training goes on meanwhile; the next save, and the end of training, wait for the exchange (exchanges never overlap,
old checkpoints are not rotated away under it, and the process never exits mid-exchange).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

from orchestrator.train.feed import write_json

COPIES_DONE = "orch_copies.json"  # written last by each node's leader: this node holds every file of the checkpoint
CHUNK = 64 * 2**20
PARTIAL = ".orch-partial"
_OWN = ("orch_complete.json", COPIES_DONE, "latest_universal")  # each node writes its own (and their .tmp)


def listing(folder: Path) -> dict[str, int]:
    """The files of a checkpoint folder to exchange: relative path -> size (not the markers each node writes for
    itself, nor a universal conversion, which each node makes from its own copy, nor half-copied files)."""
    found = {}
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if (path.is_file() and not relative.name.startswith(_OWN) and not relative.name.endswith(PARTIAL)
                and not relative.parts[0].endswith(("_universal", "_universal.partial"))):
            found[relative.as_posix()] = path.stat().st_size
    return found


def send_order(paths) -> list[str]:
    """The order files are sent in: every ZeRO optimizer partition last, so a node that holds a rank's partition
    (what `checkpoints.whole` counts) holds every other file of the checkpoint, even if the exchange broke off."""
    from orchestrator.train.reshape import is_partition

    return sorted(paths, key=lambda relative: (is_partition(Path(relative).name), relative))


def exchange(folder: Path, group, leaders: list[int], chunk: int = CHUNK) -> dict:
    """Give every leader of `group` (global ranks `leaders`, this process among them) every file of `folder` that
    some leader holds; returns what this node received."""
    import torch
    import torch.distributed as dist

    began = time.perf_counter()
    mine = listing(folder)
    views: list = [None] * len(leaders)
    dist.all_gather_object(views, mine, group=group)
    received = files = 0
    me = dist.get_rank()
    for relative in send_order(set().union(*views)):
        holders = [i for i, view in enumerate(views) if relative in view]
        if len(holders) == len(leaders):
            continue
        source, size = leaders[holders[0]], views[holders[0]][relative]
        target = folder / relative
        partial = target.with_name(target.name + PARTIAL)
        keep = relative not in mine
        if keep:
            partial.parent.mkdir(parents=True, exist_ok=True)
        try:
            with contextlib.ExitStack() as opened:
                reader = opened.enter_context(open(target, "rb")) if me == source else None
                writer = opened.enter_context(open(partial, "wb")) if keep else None
                for offset in range(0, size, chunk):
                    piece = torch.empty(min(chunk, size - offset), dtype=torch.uint8)
                    if reader:
                        reader.readinto(memoryview(piece.numpy()))
                    dist.broadcast(piece, source, group=group)
                    if writer:
                        writer.write(memoryview(piece.numpy()))
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        if keep:
            os.replace(partial, target)
            received, files = received + size, files + 1
    result = {"seconds": time.perf_counter() - began, "bytes_received": received, "files_received": files}
    write_json(str(folder / COPIES_DONE), result)
    return result


class Copies:
    """The leaders' group and the one exchange in flight (`start` after a checkpoint is marked, `wait` before the
    next save and at the end)."""

    def __init__(self, group, leaders: list[int], chunk: int = CHUNK):
        self.group, self.leaders, self.chunk = group, leaders, chunk
        self.thread: threading.Thread | None = None

    @classmethod
    def setup(cls, chunk: int = CHUNK) -> Copies | None:
        """Called by every rank (creating a group is collective): the leaders' gloo group, or None where there is
        nothing to exchange (one node). Non-leaders get a `Copies` that does nothing."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return None
        local: list = [None] * dist.get_world_size()
        dist.all_gather_object(local, int(os.environ.get("LOCAL_RANK", "0")))
        leaders = [rank for rank, local_rank in enumerate(local) if local_rank == 0]
        if len(leaders) < 2:
            return None
        group = dist.new_group(leaders, backend="gloo")
        return cls(group if dist.get_rank() in leaders else None, leaders, chunk)

    def start(self, folder: Path) -> None:
        """On a leader: exchange `folder` in the background (after waiting for the previous exchange)."""
        self.wait()
        if self.group is None:
            return
        self.thread = threading.Thread(target=self._run, args=(folder,), name="orch-checkpoint-copies", daemon=True)
        self.thread.start()

    def _run(self, folder: Path) -> None:
        try:
            done = exchange(folder, self.group, self.leaders, self.chunk)
        except Exception as exc:  # a node died mid-exchange: this copy stays incomplete, training decides the rest
            print(f"checkpoint copies: {folder.name} not copied to this node ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else ''})", flush=True)
            return
        print(f"checkpoint copies: {folder.name} whole on {os.uname().nodename}: received "
              f"{done['bytes_received'] / 2**20:.1f} MiB in {done['files_received']} file(s) from the other nodes "
              f"in {done['seconds']:.1f} s", flush=True)

    def wait(self) -> None:
        """Block until the exchange in flight (if any) is done."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
