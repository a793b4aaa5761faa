"""DeepSpeed ZeRO configs: the shipped templates (`zero2`, `zero3`, `zero3_offload`) or the user's own JSON.

The templates leave batch size, accumulation, clipping and precision as `auto`, so HF's Trainer fills them from
`training_args`; they carry no `optimizer` block, so the Trainer's torch AdamW is used (DeepSpeed's fused/CPU Adam
would first compile a C++ op, ~70 s here). Trade-off: with `zero3_offload` on GPUs, DeepSpeedCPUAdam would step
faster; add an `optimizer` block in your own JSON if you want it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError, OrchError
from orchestrator.textio import read_text

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "deepspeed"


def load_deepspeed_config(value: str | dict | None, source: str = "<config>") -> dict | None:
    """Return the DeepSpeed config dict for a preset name, a JSON path or an inline mapping (None: no DeepSpeed)."""
    if value is None:
        return None
    if isinstance(value, dict):
        cfg = dict(value)
    else:
        path = TEMPLATE_DIR / f"{value}.json" if "/" not in value and not value.endswith(".json") else Path(value)
        try:
            cfg = json.loads(read_text(path, option=False))  # a BOM from a Windows editor is fine
        except FileNotFoundError:
            raise ConfigError(f"{source}: deepspeed: config not found: {path}") from None
        except (ValueError, RecursionError) as exc:  # malformed JSON, or nested too deeply to parse
            raise ConfigError(f"{source}: deepspeed: {path} is not valid JSON: {exc or 'nested too deeply'}") from None
        except OrchError as exc:  # not UTF-8
            raise ConfigError(f"{source}: deepspeed: {exc}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{source}: deepspeed: the config must be a JSON object (a mapping)")
    if not isinstance(cfg.get("zero_optimization", {}), dict):
        raise ConfigError(f"{source}: deepspeed: zero_optimization must be a mapping")
    return cfg


def zero_stage(cfg: dict | None) -> int:
    """The ZeRO stage of a DeepSpeed config (0 when there is none)."""
    return int((cfg or {}).get("zero_optimization", {}).get("stage", 0))


def adapt_for_cpu(cfg: dict) -> dict:
    """Make a config runnable without CUDA: no pinned memory, no fp16/bf16 engines, torch's Adam if one is named."""
    cfg = json.loads(json.dumps(cfg))
    zero = cfg.get("zero_optimization", {})
    for key in ("offload_optimizer", "offload_param"):
        if isinstance(zero.get(key), dict):
            zero[key]["pin_memory"] = False
    for key in ("fp16", "bf16"):
        if isinstance(cfg.get(key), dict):
            cfg[key]["enabled"] = False
    optimizer: dict[str, Any] | None = cfg.get("optimizer")
    if optimizer and str(optimizer.get("type", "")).lower().startswith("adam"):
        optimizer.setdefault("params", {})["torch_adam"] = True
    cfg["zero_force_ds_cpu_optimizer"] = False
    return cfg


def skip_shm_comm_op() -> None:
    """On CPU, stop DeepSpeed from compiling its shared-memory comm op (~90 s per fresh machine, used only by
    inference all-reduce, never by training). Must run before anything builds DeepSpeed's torch backend."""
    import importlib

    # `import deepspeed.comm.torch as m` would bind the torch package itself (deepspeed.comm re-exports `torch`)
    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None


def init_cpu_distributed() -> None:
    """Start DeepSpeed's process group on gloo (CPU): must run after `TrainingArguments` and before `from_pretrained`."""
    import deepspeed

    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "torch_extensions"))
    deepspeed.init_distributed(dist_backend="gloo")
