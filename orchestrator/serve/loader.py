"""Load what training left behind: a base model, a merged model, or a LoRA adapter folder on top of its base.

An adapter folder is recognised by `adapter_config.json`; its base comes from `base_model_name_or_path` unless the
user passes `base` (the base moved since training). The adapter is merged into the weights after loading, so
serving an adapter costs the same per token as serving a merged model. The tokenizer comes from the adapter folder
when training saved one there that loads, otherwise from the base (ChatGLM3's saved copy does not load). Prompts
are laid out in the chat format training recorded (`train/data/prompting.py`), else the one `auto` picks for the
tokenizer.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.serve.errors import ServeError
from orchestrator.train.tokenizer_files import has_tokenizer

ADAPTER_CONFIG = "adapter_config.json"

@dataclass(frozen=True)
class ModelSource:
    """Where the weights and the tokenizer come from: `adapter` is None for a base or merged model."""

    base: Path
    adapter: Path | None
    tokenizer: Path


@dataclass
class LoadedModel:
    """A model ready for `generate`, its tokenizer, and a short description of what was loaded."""

    model: Any
    tokenizer: Any
    source: ModelSource
    template: Any = None  # the chat format (`templates.Template`) training recorded or `auto` picks


def resolve_source(path: str | Path, base: str | Path | None = None) -> ModelSource:
    """Decide what to load from `path` (and the optional base override) without loading anything."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ServeError(f"model folder not found: {folder}")
    adapter_cfg = folder / ADAPTER_CONFIG
    if not adapter_cfg.is_file():
        if base is not None:
            raise ServeError(f"--base is only for adapter folders, and {folder} has no {ADAPTER_CONFIG}")
        if not (folder / "config.json").is_file():
            raise ServeError(
                f"{folder} is neither a model folder (config.json) nor an adapter folder ({ADAPTER_CONFIG})"
            )
        return ModelSource(base=folder, adapter=None, tokenizer=folder)
    try:
        recorded = json.loads(adapter_cfg.read_text()).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError) as exc:
        raise ServeError(f"{adapter_cfg}: cannot read it: {exc}") from None
    base_dir = Path(base).expanduser() if base is not None else Path(recorded) if recorded else None
    if base_dir is None:
        raise ServeError(f"{adapter_cfg} names no base_model_name_or_path; pass --base DIR")
    if not (base_dir / "config.json").is_file():
        hint = "" if base is not None else " (recorded in adapter_config.json); pass --base DIR if it moved"
        raise ServeError(f"base model not found: {base_dir}{hint}")
    return ModelSource(base=base_dir, adapter=folder, tokenizer=folder if has_tokenizer(folder) else base_dir)


def _device_and_dtype() -> tuple[str, Any]:
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return "cpu", torch.float32


def load_model(path: str | Path, base: str | Path | None = None, trust_remote_code: bool = False) -> LoadedModel:
    """Load the model at `path` (base, merged, or adapter + its base) in eval mode on the best device here.

    A folder that ships its own code loads only with `trust_remote_code`; without it, one line before any weights."""
    from transformers import AutoModelForCausalLM

    from orchestrator.errors import DataError
    from orchestrator.train.compat import from_pretrained_kwargs
    from orchestrator.train.data.prompting import recorded_template
    from orchestrator.train.remote_code import require_imports, require_trust, warn_known_break
    from orchestrator.train.special_tokens import fill_eos_and_pad
    from orchestrator.train.tokenizer_files import load_tokenizer_from

    source = resolve_source(path, base)
    trust = require_trust(trust_remote_code, model=source.base, tokenizer=source.tokenizer)
    if trust:
        require_imports(source.base)
        warn_known_break(source.base, generating=True)
    device, dtype = _device_and_dtype()
    try:
        tokenizer = fill_eos_and_pad(load_tokenizer_from(source.tokenizer, source.base, trust)[0], source.base)
        model = AutoModelForCausalLM.from_pretrained(
            source.base, **from_pretrained_kwargs({"dtype": dtype, "trust_remote_code": trust}))
    except (OSError, ValueError) as exc:
        raise ServeError(f"cannot load {source.base}: {str(exc).splitlines()[0]}") from None
    if source.adapter is not None:
        model = attach_adapter(model, source.adapter)
    model.config.use_cache = True  # training saves use_cache: false (ChatGLM3's P-Tuning v2 config too)
    try:
        template = recorded_template([f for f in (source.adapter, source.base) if f is not None], tokenizer)
    except DataError as exc:
        raise ServeError(f"{source.adapter or source.base}: chat template: {exc}") from None
    model.to(device).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, source=source, template=template)


def attach_adapter(model: Any, adapter: Path) -> Any:
    """LoRA adapters are merged into the weights (no cost per token); prompt adapters (P-Tuning v2 / prefix
    tuning) cannot be merged, so the peft model that prepends their virtual tokens is served as it is."""
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    if peft_model.peft_config["default"].is_prompt_learning:
        # generate() passes position ids, which peft drops for virtual tokens (correctly) with a warning per call
        warnings.filterwarnings("ignore", message="Position ids are not supported for parameter efficient tuning")
        return peft_model
    return peft_model.merge_and_unload()
