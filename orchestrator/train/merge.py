"""Merge a LoRA/QLoRA adapter into its base model, producing a folder `AutoModelForCausalLM` loads alone.

The base is found in `adapter_config.json` (`base_model_name_or_path`) unless given. For QLoRA the base is loaded
unquantized (float32 on CPU, the checkpoint's dtype on GPU) before merging: merging into 4-bit weights would round
the update away. The tokenizer is the adapter folder's when that copy loads, else the base's (ChatGLM3's saved
tokenizer does not load again; its guide takes the base's too). The chat format training recorded goes along.
Everything is written into a temporary folder beside the output and renamed into place at the end: a failure
leaves no output folder behind. P-Tuning v2 is not merged: peft's prompt adapters are virtual tokens, and a model's
own prefix encoder (ChatGLM3's `pre_seq_len`) is already saved as a complete model folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.train.compat import from_pretrained_kwargs
from orchestrator.train.remote_code import require_trust, warn_known_break


PROMPT_ADAPTERS = ("PREFIX_TUNING", "P_TUNING", "PROMPT_TUNING")


def adapter_base(adapter_dir: str | Path) -> str:
    """The base model recorded in an adapter folder's `adapter_config.json`; prompt adapters are refused."""
    path = Path(adapter_dir, "adapter_config.json")
    if not path.is_file():
        pre_seq_len = _own_prefix_length(adapter_dir)
        if pre_seq_len:
            raise ConfigError(f"--adapter: {adapter_dir} is a P-Tuning v2 model (its own prefix encoder, "
                              f"pre_seq_len {pre_seq_len}) saved whole, so there is nothing to merge; use it as it "
                              f"is: orch chat {adapter_dir} / orch serve {adapter_dir}")
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


def _own_prefix_length(folder: str | Path) -> int | None:
    """`pre_seq_len` of a model folder whose config sets it (a ChatGLM3 P-Tuning v2 result), else None."""
    try:
        return json.loads(Path(folder, "config.json").read_text()).get("pre_seq_len")
    except (OSError, ValueError, AttributeError):
        return None


def merge_adapter(adapter_dir: str | Path, output_dir: str | Path, base: str | None = None,
                  trust_remote_code: bool = False) -> Path:
    """Load base + adapter, merge the LoRA weights in, and save model and tokenizer to `output_dir` (a base that
    ships its own code needs `trust_remote_code`; its code files are saved with the merged model)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from orchestrator.train.data.prompting import copy_record
    from orchestrator.train.tokenizer_files import has_tokenizer, load_tokenizer_from, restore_if_unloadable

    recorded = adapter_base(adapter_dir)
    base = base or recorded
    if not Path(base).is_dir():
        raise ConfigError(f"--base: base model folder not found: {base}")
    out = Path(output_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--output: {out} already exists and is not empty; name a new folder")
    tokenizer_from = str(adapter_dir) if has_tokenizer(adapter_dir) else base
    trust = require_trust(trust_remote_code, model=base, tokenizer=tokenizer_from)
    warn_known_break(base)
    dtype = "auto" if torch.cuda.is_available() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base, **from_pretrained_kwargs({"dtype": dtype,
                                                                                 "trust_remote_code": trust}))
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    tokenizer, _ = load_tokenizer_from(adapter_dir, base, trust)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would outlive the rename
    try:
        merged.save_pretrained(staging)
        tokenizer.save_pretrained(str(staging))
        restore_if_unloadable(staging, base, trust)
        copy_record(adapter_dir, staging)  # the chat format training used
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
