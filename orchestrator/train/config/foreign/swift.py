"""ms-swift's command-line names, accepted in a training config beside ours: each moves to our key, and errors name
the key the user wrote. A value given under both names is refused; names whose meaning differs are not aliased.

    sft_type: lora                  -> finetuning          train_dataset_sample: 2000 -> data.train_samples
    max_length: -1                  -> data.max_length     val_dataset_sample: 100    -> data.eval_samples
    system: "You are ..."           -> data.system         custom_train_dataset_path  -> data.train
    lora_target_modules: ALL        -> lora.target_modules custom_val_dataset_path    -> data.eval
    lora_rank / lora_alpha / lora_dropout_p / lora_dtype -> lora.r / alpha / dropout / dtype
    self_cognition_sample / model_name / model_author    -> self_cognition.samples / name / author
    add_output_dir_suffix: true     -> versioned_output_dir   output_dir -> training_args.output_dir
"""

from __future__ import annotations

from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.train.config.notes import Provenance

SWIFT_KEYS = {
    "sft_type": "finetuning",
    "train_dataset_sample": "data.train_samples",
    "val_dataset_sample": "data.eval_samples",
    "max_length": "data.max_length",
    "system": "data.system",
    "custom_train_dataset_path": "data.train",
    "custom_val_dataset_path": "data.eval",
    "dataset_test_ratio": "data.eval_ratio",
    "lora_target_modules": "lora.target_modules",
    "lora_rank": "lora.r",
    "lora_alpha": "lora.alpha",
    "lora_dropout_p": "lora.dropout",
    "lora_dtype": "lora.dtype",
    "self_cognition_sample": "self_cognition.samples",
    "model_name": "self_cognition.name",
    "model_author": "self_cognition.author",
    "add_output_dir_suffix": "versioned_output_dir",
    "output_dir": "training_args.output_dir",
}
NOT_BUILT = {
    "longlora": "LongLoRA (shifted sparse attention for long contexts) is not built into orch; train with "
                "finetuning: lora and a longer data.max_length on a model with a longer RoPE context instead",
    "qalora": "QA-LoRA (quantization-aware LoRA on GPTQ models) is not built into orch; use finetuning: qlora "
              "(LoRA on a 4-bit bitsandbytes base)",
}


def lift_swift_keys(raw: dict[str, Any], prov: Provenance) -> dict[str, Any]:
    """`raw` with ms-swift's top-level names moved to ours (in `prov.origin` for error messages)."""
    out = dict(raw)
    for swift, ours in SWIFT_KEYS.items():
        if swift not in out:
            continue
        value = out.pop(swift)
        *parents, leaf = ours.split(".")
        section = out
        for name in parents:
            current = section.get(name)
            if current is None:
                current = {}
            if not isinstance(current, dict):
                raise ConfigError(f"{name}: expected a mapping (got {current!r})")
            section[name] = current = dict(current)
            section = current
        if leaf in section:
            raise ConfigError(f"{swift}: also set as {ours}; keep one")
        section[leaf] = value
        prov.origin[ours] = swift
    finetuning = out.get("finetuning")
    if isinstance(finetuning, str) and finetuning.lower() in NOT_BUILT:
        raise ConfigError(f"{prov.name('finetuning')}: {finetuning}: {NOT_BUILT[finetuning.lower()]}")
    return out


def renamed(message: str, prov: Provenance) -> str:
    """An error message about one of our keys, naming the key the user wrote instead."""
    for ours, theirs in prov.origin.items():
        if ours != theirs and message.startswith((f"{ours}:", f"{ours}[")):
            return theirs + message[len(ours):]
    return message
