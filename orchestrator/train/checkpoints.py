"""Checkpoints: a completeness marker, and which checkpoint `resume_from_checkpoint` means.

HF's Trainer writes `checkpoint-<step>/` piece by piece (weights, optimizer, RNG, trainer state); a run killed in
the middle leaves a folder that looks like a checkpoint. After every save all ranks meet at a barrier and then each
node's local rank 0 writes `orch_complete.json` into the folder. `latest` picks the newest folder with the marker
and says which incomplete ones it skipped; all ranks agree on the newest one complete on every node.

The marker records the run's layout (world size, per-device batch, accumulation), so a resume on another world
size keeps the global batch (`reshape`). Without a shared filesystem each node holds only what its own ranks wrote
(DeepSpeed: its own ZeRO partitions; orch sets `save_on_each_node`, so weights, optimizer of plain DDP, scheduler and
trainer state are whole on every node). On the same world size every rank finds its own partition again; on
another one, a DeepSpeed checkpoint is resumable only where a node holds every rank's partition, so `latest` falls
back, in one line, to the newest checkpoint that is whole on every node of this job. With `checkpoint_copies:
every_node` the nodes exchange each checkpoint's files after it is marked (`copies`), so every checkpoint whose
exchange finished is whole on every node.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from orchestrator.errors import ConfigError

MARKER = "orch_complete.json"
_STEP = re.compile(r"^checkpoint-(\d+)$")


def mark_complete(folder: str | Path, step: int, layout: dict | None = None) -> None:
    """Write the completeness marker (with the run's layout) into a checkpoint folder (call after every rank has
    finished saving)."""
    Path(folder, MARKER).write_text(json.dumps({"step": step, "time": time.time(), **(layout or {})}))


def is_complete(folder: str | Path) -> bool:
    """True when the checkpoint folder carries the marker and HF's trainer state."""
    return Path(folder, MARKER).is_file() and Path(folder, "trainer_state.json").is_file()


def checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """All `checkpoint-<step>` folders under `output_dir`, oldest step first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP.match(p.name))]
    return sorted(found)


def resolve_resume(value: str | int | None, output_dir: str | Path, log=print,
                   copies: str = "own_node") -> str | None:
    """The checkpoint folder to resume from: None (fresh run), "latest", a step number or a path; says which
    (`copies`: the config's `checkpoint_copies`, which says why a partition may be missing)."""
    if value is None:
        return None
    if value == "latest":
        found = checkpoints(output_dir)
        whole, lacking = whole_on_every_rank({step: local_view(path) for step, path in found if is_complete(path)})
        chosen = max(whole, default=None)
        newer = [(step, path.name, is_complete(path)) for step, path in found if chosen is None or step > chosen]
        if skipped := [name for _, name, complete in newer if not complete]:
            log(f"resume: skipped incomplete checkpoint(s) {', '.join(skipped)} (no {MARKER})")
        if elsewhere := [name for step, name, complete in newer if complete and step not in lacking]:
            log(f"resume: skipped checkpoint(s) {', '.join(elsewhere)} (complete here, not on every node)")
        for step, name, _ in newer:
            if step in lacking:
                log(fallback_line(name, lacking[step], chosen, copies))
        if chosen is None:
            if not lacking:  # else the line above said why and where it starts
                log(f"resume: no complete checkpoint under {output_dir}; starting from step 0")
            return None
        resume = str(dict(found)[chosen])
    else:
        path = Path(output_dir, f"checkpoint-{value}") if isinstance(value, int) else Path(value)
        if not path.is_dir():
            raise ConfigError(f"resume_from_checkpoint: checkpoint not found: {path}")
        if not is_complete(path):
            raise ConfigError(f"resume_from_checkpoint: {path} is incomplete (no {MARKER}); the save was interrupted")
        resume = str(path)
    log(f"resuming from {resume}")
    return resume


def fallback_line(name: str, ranks: str, chosen: int | None, copies: str) -> str:
    """The one line saying that checkpoint `name` lacks the ZeRO partitions of `ranks` here, why, and which
    checkpoint the run falls back to."""
    why = ("its exchange between the nodes had not finished (checkpoint_copies: every_node)"
           if copies == "every_node" else "saved on another world size, no shared filesystem")
    return (f"resume: {name} lacks the ZeRO partition(s) of rank(s) {ranks} on a node of this job ({why}: they "
            f"stayed on a node not in this job); falling back to "
            f"{f'checkpoint-{chosen}' if chosen is not None else 'step 0'}")


def local_view(folder: Path) -> dict:
    """What this rank sees of a complete checkpoint: the world size it was saved on, and which ranks' ZeRO
    partitions are here (empty without DeepSpeed)."""
    from orchestrator.train.reshape import partitions, saved_layout

    return {"world_size": saved_layout(folder)["world_size"], "partitions": partitions(folder)}


def whole_on_every_rank(local: dict[int, dict]) -> tuple[set[int], dict[int, str]]:
    """The checkpoint steps every rank can resume from, and, for those complete everywhere but not resumable on
    this world size, the ranks whose partitions some node lacks. A node that died mid-save makes the others
    resume from the checkpoint before, as it must."""
    import torch.distributed as dist

    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    gathered: list = [local]
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, local)
    return whole(gathered, world)


def whole(views: list[dict[int, dict]], world: int) -> tuple[set[int], dict[int, str]]:
    """`whole_on_every_rank`'s decision over every rank's view (pure): a DeepSpeed checkpoint saved on another
    world size needs every saved rank's partition on every node (each node converts its own copy)."""
    complete = set.intersection(*(set(view) for view in views)) if views else set()
    usable, lacking = set(), {}
    for step in complete:
        saved_world = views[0][step]["world_size"]
        missing = sorted({rank for view in views if view[step]["partitions"]
                          for rank in set(range(saved_world)) - set(view[step]["partitions"])})
        if saved_world != world and missing:
            lacking[step] = ", ".join(map(str, missing))
        else:
            usable.add(step)
    return usable, lacking


def node_log(args):
    """A `log` for `resolve_resume` that prints on each node's local rank 0: every node's log says where it
    resumed from."""
    return (lambda message: print(message, flush=True)) if args.local_process_index == 0 else (lambda message: None)


def completeness_callback(copies: str = "own_node"):
    """A TrainerCallback that marks each checkpoint complete once every rank has saved it; with `copies:
    every_node` and no shared filesystem, it then copies the checkpoint to every node in the background
    (`orchestrator.train.copies`)."""
    import os

    from transformers import TrainerCallback

    from orchestrator.train.copies import Copies
    from orchestrator.train.reshape import layout

    exchanging = copies == "every_node" and os.environ.get("ORCH_SHARED_FS") == "0"

    class MarkComplete(TrainerCallback):
        """Barrier, then local rank 0 writes the marker (each node marks its own copy without a shared FS:
        orch then sets `save_on_each_node`, so every node's copy is whole)."""

        copies: Copies | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if exchanging:
                self.copies = Copies.setup()

        def on_step_end(self, args, state, control, **kwargs):
            if control.should_save and self.copies:  # the save may rotate the checkpoint being exchanged away
                self.copies.wait()

        on_epoch_end = on_step_end

        def on_save(self, args, state, control, **kwargs):
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.barrier()
            folder = Path(args.output_dir, f"checkpoint-{state.global_step}")
            crash_during_save(state.global_step)
            if state.is_local_process_zero and folder.is_dir():
                mark_complete(folder, state.global_step, layout(args))
                if self.copies:
                    self.copies.start(folder)

        def on_train_end(self, args, state, control, **kwargs):
            if self.copies:
                self.copies.wait()

    return MarkComplete()


def crash_during_save(step: int) -> None:
    """Fault injection for the reliability suite: `ORCH_FAILPOINT=checkpoint-save:STEP[:NODE]` SIGKILLs this
    process (on node NODE only, when given: the others finish and mark the save) after checkpoint STEP is written
    but before it is marked complete (a node dying mid-save). It fires on a job's first attempt only
    (`ORCH_RESTART_COUNT` unset), so the restart can show the recovery."""
    import os
    import signal

    point, _, rest = os.environ.get("ORCH_FAILPOINT", "").partition(":")
    at, _, node = rest.partition(":")
    if (point == "checkpoint-save" and at == str(step) and node in ("", os.environ.get("ORCH_NODE"))
            and not os.environ.get("ORCH_RESTART_COUNT")):
        os.kill(os.getpid(), signal.SIGKILL)
