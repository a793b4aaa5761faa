"""Build HF `TrainingArguments` (or trl's `DPOConfig`) from a config, with the defaults the worker relies on.

Decisions made here, in one place:
- no CUDA -> `use_cpu=True` (DDP then picks gloo; `ddp_backend` is left alone); bf16/fp16 asked for on a CPU-only
  run are turned off with a warning (float32 is exact and what the CPU tests compare against), and so is trl's
  bf16 default for DPO;
- TensorBoard by default; events land in `output_dir/runs/` (or `$TENSORBOARD_LOGGING_DIR`);
- non-padding tokens are counted (for tokens/s); replicas log warnings only.
"""

from __future__ import annotations

import os
import sys

from orchestrator.errors import ConfigError
from orchestrator.train.compat import training_args_kwargs
from orchestrator.train.config import TrainConfig
from orchestrator.train.deepspeed import adapt_for_cpu, load_deepspeed_config, skip_shm_comm_op


def worker_defaults(cfg: TrainConfig) -> dict:
    """The keyword arguments for `TrainingArguments`: the user's `training_args` over our defaults."""
    import torch

    kwargs = {
        "report_to": "tensorboard",
        "include_num_input_tokens_seen": "non_padding" if cfg.stage != "dpo" else "no",
        "log_level_replica": "warning",
        "ddp_find_unused_parameters": False,
        "save_strategy": "steps",
        "remove_unused_columns": cfg.stage == "dpo",
        # launched by orch on nodes without a shared filesystem: every node keeps whole checkpoints, so a restart
        # resumes on every rank (otherwise only the master has weights, optimizer and trainer state)
        "save_on_each_node": os.environ.get("ORCH_SHARED_FS") == "0",
        **cfg.training_args,
        "output_dir": cfg.output_dir,
    }
    if not torch.cuda.is_available():
        kwargs["use_cpu"] = True
        for flag in ("bf16", "fp16"):
            if kwargs.pop(flag, False):
                if os.environ.get("RANK", "0") == "0":
                    print(f"warning: training_args.{flag}: no CUDA device here; training in float32", file=sys.stderr)
            kwargs[flag] = False  # trl's DPOConfig turns bf16 on unless told (DeepSpeed on CPU then refuses)
    ds = load_deepspeed_config(cfg.deepspeed, cfg.source)
    if ds is not None:
        if torch.cuda.is_available():
            kwargs["deepspeed"] = ds
        else:
            skip_shm_comm_op()
            kwargs["deepspeed"] = adapt_for_cpu(ds)
    return kwargs


def build_training_args(cfg: TrainConfig, extra: dict | None = None):
    """`TrainingArguments` for stages pt/sft, `DPOConfig` (with `extra`, e.g. beta) for dpo; errors name the key."""
    if cfg.stage == "dpo":
        from trl import DPOConfig as cls
    else:
        from transformers import TrainingArguments as cls
    kwargs = {**worker_defaults(cfg), **(extra or {})}
    try:
        return cls(**training_args_kwargs(cls, kwargs))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{cfg.source}: {blame(cfg.training_args, str(exc))}: {exc}") from None


def blame(user_args: dict, message: str) -> str:
    """Name the `training_args` key an error message is about: the key or its value appears in the message."""
    for key, value in user_args.items():
        if key in message or (isinstance(value, str) and value and value in message):
            return f"training_args.{key}"
    return "training_args"
