"""Resume on a different world size (a node lost, excluded or added): the same run goes on, not a new one.

What stays the same: the weights, the optimizer moments, the LR schedule position, the data position and the global
batch (per-device batch x gradient accumulation x world size). Orch changes gradient accumulation to keep the global
batch and says so in one line; where no whole number does it, the run stops before training with one line.

DeepSpeed ZeRO partitions its optimizer state by rank, and refuses a checkpoint saved on another world size. The
checkpoint is then converted once with DeepSpeed's own `ds_to_universal` into `global_stepN_universal/` beside the
original (cached there: a second restart reuses it) and loaded with `checkpoint.load_universal`, which re-partitions
the fp32 weights and moments for the new world. The conversion runs on the nodes, under a file lock in the
checkpoint folder: with a shared filesystem the first rank converts and the others find it done; without one each
node converts its own copy (which must hold every rank's partition: see `checkpoints.resolve_resume`).
Plain DDP needs no conversion: HF's Trainer saves the whole optimizer state on rank 0 (on every node without a shared
filesystem) and every rank loads it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import time
from pathlib import Path

from orchestrator.errors import ConfigError

UNIVERSAL_DONE = "orch_universal.json"  # written last into the converted folder: the cache is whole
_PARTITION = re.compile(r"^(?:bf16_)?zero_pp_rank_(\d+)_mp_rank_\d+_optim_states\.pt$")


def layout(args) -> dict:
    """How a run is laid out: what a checkpoint's marker records, so a resume can compare."""
    return {"world_size": args.world_size, "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps}


def saved_layout(folder: str | Path) -> dict:
    """The layout a checkpoint was saved with (from orch's marker; older markers: the world size from HF's
    per-rank RNG files, the batch unknown)."""
    try:
        saved = json.loads(Path(folder, "orch_complete.json").read_text())
    except (OSError, ValueError):
        saved = {}
    if "world_size" not in saved:
        saved["world_size"] = max(1, len(list(Path(folder).glob("rng_state_*.pth"))))
    return saved


def deepspeed_tag(folder: str | Path) -> str | None:
    """The DeepSpeed tag (`global_stepN`) of a checkpoint folder, or None when DeepSpeed did not write it."""
    latest = Path(folder, "latest")
    return latest.read_text().strip() if latest.is_file() else None


def is_partition(name: str) -> bool:
    """True for the file name of a rank's ZeRO optimizer partition
    (`[bf16_]zero_pp_rank_R_mp_rank_M_optim_states.pt`)."""
    return _PARTITION.match(name) is not None


def partitions(folder: str | Path) -> list[int]:
    """The ranks whose ZeRO optimizer partition is in this checkpoint folder (as this node sees it)."""
    tag = deepspeed_tag(folder)
    if tag is None or not Path(folder, tag).is_dir():
        return []
    return sorted(int(m.group(1)) for p in Path(folder, tag).iterdir() if (m := _PARTITION.match(p.name)))


def accumulation_for(saved: dict, world_size: int, per_device: int, accumulation: int) -> int:
    """The gradient accumulation that keeps the checkpoint's global batch on `world_size` processes of
    `per_device` samples (the configured `accumulation` when the checkpoint does not say or nothing changed)."""
    if "per_device_train_batch_size" not in saved:
        return accumulation
    old = (saved["per_device_train_batch_size"], saved["gradient_accumulation_steps"], saved["world_size"])
    if old == (per_device, accumulation, world_size):
        return accumulation
    global_batch = old[0] * old[1] * old[2]
    if global_batch % (per_device * world_size):
        raise ConfigError(
            f"resume: the global batch {global_batch} ({old[0]} per device x {old[1]} accumulation x {old[2]} "
            f"processes) cannot be kept on {world_size} processes of {per_device}: {per_device * world_size} does "
            "not divide it; use a world size or per_device_train_batch_size that does, or start a new run")
    return global_batch // (per_device * world_size)


def reshape(resume: str | None, args, build, log=print):
    """The `TrainingArguments` to resume `resume` with on this world: gradient accumulation set to keep the
    global batch (said in one line), DeepSpeed switched to the universal checkpoint (converted here if needed)
    when the world size changed. `build(extra)` rebuilds the arguments with overrides."""
    if resume is None:
        return args
    saved = saved_layout(resume)
    accumulation = accumulation_for(saved, args.world_size, args.per_device_train_batch_size,
                                    args.gradient_accumulation_steps)
    extra: dict = {}
    changed = saved["world_size"] != args.world_size or accumulation != args.gradient_accumulation_steps
    if changed and "gradient_accumulation_steps" in saved:
        log(f"resume: world size {saved['world_size']} -> {args.world_size}: gradient accumulation "
            f"{saved['gradient_accumulation_steps']} -> {accumulation} keeps the global batch at "
            f"{args.per_device_train_batch_size * accumulation * args.world_size}")
    if accumulation != args.gradient_accumulation_steps:
        extra["gradient_accumulation_steps"] = accumulation
    if saved["world_size"] != args.world_size and args.deepspeed and deepspeed_tag(resume):
        ensure_universal(resume)  # the converting rank says so (any rank may get the lock first)
        extra["deepspeed"] = with_universal_load(args.deepspeed)
    return build(extra) if extra else args


def with_universal_load(ds_config: dict) -> dict:
    """The DeepSpeed config (the mapping `arguments.worker_defaults` loaded) with `checkpoint.load_universal`
    on (the engine then reads `latest_universal`)."""
    return {**ds_config, "checkpoint": {**ds_config.get("checkpoint", {}), "load_universal": True}}


def ensure_universal(folder: str | Path, log=print) -> Path:
    """DeepSpeed's universal form of a checkpoint, converted once (under a lock) into `<tag>_universal/` beside
    it, with `latest_universal` naming it; returns the converted folder."""
    from orchestrator.train.data.cache import build_lock

    folder = Path(folder)
    tag = deepspeed_tag(folder)
    target = folder / f"{tag}_universal"
    with build_lock(target):
        if not (target / UNIVERSAL_DONE).is_file():
            began = time.perf_counter()
            convert(folder / tag, target)
            seconds = time.perf_counter() - began
            size = sum(p.stat().st_size for p in (folder / tag).rglob("*") if p.is_file())
            (target / UNIVERSAL_DONE).write_text(json.dumps({"seconds": seconds, "source_bytes": size}))
            log(f"resume: converted {folder.name} ({size / 2**20:.1f} MiB of ZeRO state) to DeepSpeed's universal "
                f"checkpoint in {seconds:.1f} s on {os.uname().nodename}")
        (folder / "latest_universal").write_text(target.name)
    return target


def convert(source: Path, target: Path) -> None:
    """Run DeepSpeed's `ds_to_universal` from `source` into `target` (via a temporary folder, renamed when
    done), its own output kept out of the training log (it is printed only if the conversion fails)."""
    from types import SimpleNamespace

    from deepspeed.checkpoint.ds_to_universal import main as ds_to_universal

    work = target.with_name(target.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    options = SimpleNamespace(input_folder=str(source), output_folder=str(work), num_extract_workers=1,
                              num_merge_workers=1, keep_temp_folder=False, strict=True,
                              inject_missing_state=True)  # HF's Trainer saves no universal_checkpoint_info
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            ds_to_universal(options)
    except BaseException:
        print(said.getvalue(), flush=True)
        raise
    os.replace(work, target)
