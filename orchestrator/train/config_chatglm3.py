"""The ChatGLM3 finetune layout (`data_config`, `max_input_length`, `peft_config`, ...) translated into ours, and
Seq2SeqTrainingArguments' generation names lifted from `training_args` into `generation:`."""

from __future__ import annotations

import typing
from typing import Any

from orchestrator.errors import ConfigError
from orchestrator.train.config_build import build, coerce, reject_unknown
from orchestrator.train.config_notes import Provenance
from orchestrator.train.config_schema import GENERATION_TRAINING_ARGS, GenerationSection, PromptSection


CHATGLM3_PROMPT_TYPES = {"PREFIX_TUNING": "prefix", "P_TUNING": "ptuning"}  # peft_config.peft_type -> finetuning


def translate_chatglm3(raw: dict, prov: Provenance | None = None) -> dict:
    """Turn the ChatGLM3 finetune layout into ours (`peft_config` becomes `lora:`, without `target_modules` peft's
    own default for the model type (ChatGLM3: query_key_value), or `prompt:` for PREFIX_TUNING (P-Tuning v2: the
    model's own prefix encoder where its config has `pre_seq_len`) and P_TUNING). `test_file` becomes `data.test`; generation defaults follow finetune_hf.py (answers
    up to `max_output_length` tokens, the first 50 eval prompts); `load_config` lifts `training_args`' generation
    names into `generation:`. Notes on keys without effect go into `prov`."""
    prov = prov if prov is not None else Provenance()
    known = {"data_config", "max_input_length", "max_output_length", "training_args", "peft_config", "model",
             "stage", "deepspeed", "resume_from_checkpoint", "data_dir", "trust_remote_code"}
    reject_unknown(raw, known, "")
    dc = _mapping(raw, "data_config")
    reject_unknown(dc, {"train_file", "val_file", "test_file", "num_proc"}, "data_config.")
    if "train_file" not in dc:
        raise ConfigError("data_config.train_file: required")
    out: dict[str, Any] = {k: raw[k] for k in ("model", "stage", "deepspeed", "resume_from_checkpoint", "data_dir",
                                               "trust_remote_code") if k in raw}
    max_in, max_out = _length(raw, "max_input_length"), _length(raw, "max_output_length")
    out["data"] = {"train": dc["train_file"], "max_length": max_in + max_out, "truncation_strategy": "right",
                   "max_input_length": max_in, "max_output_length": max_out}
    if dc.get("val_file"):
        out["data"]["eval"] = dc["val_file"]
    if dc.get("test_file"):
        out["data"]["test"] = dc["test_file"]
        prov.origin["data.test"] = "data_config.test_file"
    if "num_proc" in dc:
        prov.warn("data_config.num_proc", "ignored (orch tokenizes each file once, in parallel, on its own)")
    out["training_args"] = dict(_mapping(raw, "training_args"))
    lift_generation(out, prov)
    out["generation"] = {"max_new_tokens": max_out, "max_samples": 50,
                         **out.get("generation", {})}
    peft = dict(_mapping(raw, "peft_config"))
    if not peft:
        out["finetuning"] = "full"
        return out
    peft_type = str(peft.pop("peft_type", "LORA")).upper()
    task_type = str(peft.pop("task_type", "CAUSAL_LM")).upper()
    if task_type != "CAUSAL_LM":
        prov.warn("peft_config.task_type", f"{task_type} ignored (orch trains causal language models: CAUSAL_LM)")
    if peft_type in CHATGLM3_PROMPT_TYPES:
        reject_unknown(peft, set(PromptSection.__dataclass_fields__),
                        "peft_config.")
        out["finetuning"] = CHATGLM3_PROMPT_TYPES[peft_type]
        out["prompt"] = peft
        return out
    if peft_type != "LORA":
        known = ", ".join(["LORA", *CHATGLM3_PROMPT_TYPES])
        raise ConfigError(f"peft_config.peft_type: expected one of {known} (got {peft_type!r})")
    names = {"r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "target_modules": "target_modules"}
    reject_unknown(peft, set(names), "peft_config.")
    out["finetuning"] = "lora"
    out["lora"] = {names[k]: v for k, v in peft.items()}
    out["lora"].setdefault("target_modules", None)  # as get_peft_config: peft's default for the model type
    return out


def lift_generation(raw: dict, prov: Provenance) -> None:
    """Move Seq2SeqTrainingArguments' generation names (`predict_with_generate`, `generation_config`,
    `generation_num_beams`, `generation_max_length`) from `training_args` into `generation:`, each checked under the
    name the user wrote; a value set both ways is refused."""
    gen, args = raw.get("generation", {}), raw.get("training_args")
    if not isinstance(gen, dict) or not isinstance(args, dict):
        return  # build names the key that is not a mapping
    for key in gen:
        prov.origin.setdefault(f"generation.{key}", f"generation.{key}")
    args = raw["training_args"] = dict(args)
    lifted: dict[str, tuple[Any, str]] = {}
    if "generation_config" in args:
        given = args.pop("generation_config")
        section = build(GenerationSection, given, "training_args.generation_config.")
        lifted.update({k: (getattr(section, k), f"training_args.generation_config.{k}") for k in given})
    hints = typing.get_type_hints(GenerationSection)
    for name, key in GENERATION_TRAINING_ARGS.items():
        if name in args:
            where = f"training_args.{name}"
            if key in lifted:
                raise ConfigError(f"{where}: also set as {lifted[key][1]}; keep one")
            lifted[key] = (coerce(args.pop(name), hints[key], where), where)
            if name == "generation_max_length":
                prov.warn(where, "read as generation.max_new_tokens (orch caps the generated tokens, not prompt + "
                                 "answer)")
    for key, (value, where) in lifted.items():
        if f"generation.{key}" in prov.origin:
            raise ConfigError(f"{where}: also set as {prov.origin[f'generation.{key}']}; keep one")
        prov.origin[f"generation.{key}"] = where
    if lifted:
        raw["generation"] = {**gen, **{key: value for key, (value, _) in lifted.items()}}


def _mapping(raw: dict, key: str) -> dict:
    """A section that must be a mapping (absent: empty)."""
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping of keys to values, got {type(value).__name__}")
    return value


def _length(raw: dict, key: str) -> int:
    """`max_input_length` / `max_output_length`: a positive whole number of tokens (default 512)."""
    value = raw.get(key, 512)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit() \
            or int(value) < 1:
        raise ConfigError(f"{key}: expected a positive number of tokens, got {value!r}")
    return int(value)
