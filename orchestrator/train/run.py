"""Run one training config in this process: pick the recipe for the stage, and always leave the process group.

This is what `python -m orchestrator.train CONFIG` calls on every rank (torchrun sets RANK/WORLD_SIZE/...).
"""

from __future__ import annotations

import os
import sys

from orchestrator.train.compat import allow_checkpoint_loads
from orchestrator.train.config import TrainConfig


def run(cfg: TrainConfig) -> str:
    """Train with the recipe for `cfg.stage` and return the output folder."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.expanduser("~/.cache/torch_extensions"))
    _quiet_other_ranks()
    print_warnings(cfg)
    _describe_env(cfg)
    allow_checkpoint_loads()
    try:
        if cfg.stage == "dpo":
            from orchestrator.train.dpo import run_dpo

            return run_dpo(cfg)
        from orchestrator.train.sft import run_sft

        return run_sft(cfg)
    finally:
        _leave_process_group()


def print_warnings(cfg: TrainConfig) -> None:
    """One line per config key that has no effect (`config.notes`), printed by global rank 0 only."""
    if int(os.environ.get("RANK", "0")) == 0:
        for line in cfg.warnings:
            print(f"warning: {line}", file=sys.stderr, flush=True)


def _describe_env(cfg: TrainConfig) -> None:
    """Rank 0 names the worker code and the node's ML stack it runs on, and warns about versions outside the
    supported ranges (the launch preflight refuses those; a direct run or --skip-checks gets here)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    from pathlib import Path

    import torch

    import orchestrator
    from orchestrator.train.requirements import installed, needed, unmet

    packages = needed(cfg)
    versions = installed(packages)
    stack = ", ".join(f"{name} {version}" for name, version in versions.items() if version)
    print(f"worker: {Path(orchestrator.__file__).parent} on {stack}", flush=True)
    for line in unmet(versions, packages, has_gpu=torch.cuda.is_available()):
        print(f"warning: {line}", file=sys.stderr, flush=True)


def _quiet_other_ranks() -> None:
    """Only rank 0 draws progress bars (loading weights, writing shards); the others keep warnings and errors, so
    the merged log of N processes reads like one."""
    if int(os.environ.get("RANK", "0")) == 0:
        return
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _leave_process_group() -> None:
    """Destroy the process group: without it about one run in ten aborts at exit (gloo teardown race)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
