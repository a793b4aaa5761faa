"""Run one training config in this process: pick the recipe for the stage, and always leave the process group.

This is what `python -m orchestrator.train CONFIG` calls on every rank (torchrun sets RANK/WORLD_SIZE/...).
"""

from __future__ import annotations

import os

from orchestrator.train.config import TrainConfig


def run(cfg: TrainConfig) -> str:
    """Train with the recipe for `cfg.stage` and return the output folder."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.expanduser("~/.cache/torch_extensions"))
    _quiet_other_ranks()
    try:
        if cfg.stage == "dpo":
            from orchestrator.train.dpo import run_dpo

            return run_dpo(cfg)
        from orchestrator.train.sft import run_sft

        return run_sft(cfg)
    finally:
        _leave_process_group()


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
