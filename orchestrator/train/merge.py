"""Merge a LoRA/QLoRA adapter into its base model, producing a folder `AutoModelForCausalLM` loads alone.

The base is found in `adapter_config.json` (`base_model_name_or_path`) unless given. For QLoRA the base is loaded
unquantized (float32 on CPU, the checkpoint's dtype on GPU) before merging: merging into 4-bit weights would round
the update away. The tokenizer is copied from the adapter folder when it has one, else from the base.
"""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.train.compat import from_pretrained_kwargs
from orchestrator.train.remote_code import require_trust, warn_known_break


PROMPT_ADAPTERS = ("PREFIX_TUNING", "P_TUNING", "PROMPT_TUNING")


def adapter_base(adapter_dir: str | Path) -> str:
    """The base model recorded in an adapter folder's `adapter_config.json`; prompt adapters are refused."""
    path = Path(adapter_dir, "adapter_config.json")
    if not path.is_file():
        raise ConfigError(f"--adapter: {adapter_dir} has no adapter_config.json (not a LoRA adapter folder)")
    recorded = json.loads(path.read_text())
    if recorded.get("peft_type") in PROMPT_ADAPTERS:
        raise ConfigError(f"--adapter: {adapter_dir} is a {recorded['peft_type']} adapter (virtual tokens, not weight "
                          f"deltas), which cannot be merged; serve it as it is: orch chat {adapter_dir} / "
                          f"orch serve {adapter_dir}")
    base = recorded.get("base_model_name_or_path")
    if not base:
        raise ConfigError(f"{path}: no base_model_name_or_path; pass --base")
    return base


def merge_adapter(adapter_dir: str | Path, output_dir: str | Path, base: str | None = None,
                  trust_remote_code: bool = False) -> Path:
    """Load base + adapter, merge the LoRA weights in, and save model and tokenizer to `output_dir` (a base that
    ships its own code needs `trust_remote_code`; its code files are saved with the merged model)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from orchestrator.train.data.prompting import copy_record

    recorded = adapter_base(adapter_dir)
    base = base or recorded
    if not Path(base).is_dir():
        raise ConfigError(f"--base: base model folder not found: {base}")
    has_tokenizer = any(Path(adapter_dir, n).is_file() for n in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer_dir = str(adapter_dir) if has_tokenizer else base
    trust = require_trust(trust_remote_code, model=base, tokenizer=tokenizer_dir)
    warn_known_break(base)
    dtype = "auto" if torch.cuda.is_available() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, **from_pretrained_kwargs({"dtype": dtype,
                                                                                 "trust_remote_code": trust}))
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    out = Path(output_dir)
    merged.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=trust).save_pretrained(out)
    copy_record(adapter_dir, out)  # the chat format training used
    return out
