"""Training config: YAML -> dataclasses, validated before any model is loaded.

Two layouts are accepted:
- ours: `model`, `stage`, `finetuning`, `data`, `lora`, `qlora`, `freeze`, `dpo`, `deepspeed`,
  `resume_from_checkpoint`, `generation` (generation-based evaluation), `training_args` (passed through to HF
  `TrainingArguments`; Seq2Seq's generation names move into `generation`);
- the ChatGLM3 finetune layout: `data_config: {train_file, val_file, test_file, num_proc}`, `max_input_length`,
  `max_output_length`, `training_args`, `peft_config: {peft_type: LORA, ...}`; it is translated into ours.

Every mistake raises `ConfigError` naming the file and the key (`lora.r: ...`). Relative paths resolve against the
current working directory (what torchrun's workers share on every node); data files against `--data-dir` if given.
Only `training_args` key names are checked here (against the installed `TrainingArguments`); their values are
checked when the worker builds its `TrainingArguments` (`arguments.build_training_args`), before any model loads.

The parts: `config_schema` (the sections), `config_build` (typed building), `config_aliases` (ms-swift's names),
`config_chatglm3` (ChatGLM3's layout), `config_checks` (cross-field and file checks), `config_notes` (keys without
effect); `load_config` here runs them in that order.
"""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.train.config_aliases import lift_swift_keys, renamed
from orchestrator.train.config_build import build
from orchestrator.train.config_chatglm3 import lift_generation, translate_chatglm3
from orchestrator.train.config_checks import check, check_generation
from orchestrator.train.config_notes import Provenance, unused_keys
from orchestrator.train.config_schema import TrainConfig
from orchestrator.yamlio import load_yaml


def load_config(path: str | os.PathLike, model: str | None = None, data_dir: str | None = None,
                on_controller: bool = False, trust_remote_code: bool = False, deepspeed: str | None = None,
                resume: str | None = None, stack_checks: bool | None = None) -> TrainConfig:
    """Read and validate a YAML config; `model`, `data_dir`, `deepspeed`, `resume` and `trust_remote_code` (when
    true) override the config (the command line wins).

    `on_controller`: the check `orch launch` runs before anything starts, on a machine that may lack the nodes'
    absolute paths and transformers: those paths and the checks against the ML stack are left to the worker.
    `stack_checks` (default: not `on_controller`): check the `training_args` names and the model folder's own code
    against the installed transformers/trl (importing them takes seconds: `orch train` leaves it to its worker)."""
    src = str(path)
    if not Path(path).is_file():
        raise ConfigError(f"{src}: config file not found")
    raw = load_yaml(path, ConfigError)  # one line for bad YAML, a key given twice, a non-UTF-8 file
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: the config must be a mapping of keys to values")
    prov = Provenance()
    try:
        if "data_config" in raw or "peft_config" in raw:
            raw = translate_chatglm3(raw, prov)
        else:
            raw = lift_swift_keys(raw, prov)
            lift_generation(raw, prov)
        if model:
            raw["model"] = model
        if deepspeed:
            raw["deepspeed"] = deepspeed
        if resume:
            raw["resume_from_checkpoint"] = resume
        if trust_remote_code:
            raw["trust_remote_code"] = True
        cfg = build(TrainConfig, {**raw, "source": src, "data_dir": data_dir or raw.get("data_dir", ".")}, "")
        check(cfg, on_controller, not on_controller if stack_checks is None else stack_checks)
        check_generation(cfg, prov, on_controller)
        unused_keys(raw, cfg, prov)
        cfg.warnings = prov.warnings + cfg.warnings
    except ConfigError as exc:
        raise ConfigError(f"{src}: {renamed(str(exc), prov)}") from None
    return cfg
