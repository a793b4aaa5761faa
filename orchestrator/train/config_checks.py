"""Cross-field checks of a built training config, file existence, and the `training_args` names against the
installed transformers/trl; every message names the key the user wrote."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Union

from orchestrator.errors import ConfigError
from orchestrator.textio import found
from orchestrator.train.config_build import coerce, reject_unknown
from orchestrator.train.config_notes import Provenance
from orchestrator.train.config_schema import (DEEPSPEED_ALIASES, DEEPSPEED_PRESETS, LORA_DTYPES, LORA_TARGETS,
                                              PROMPT_FINETUNING, TRAINING_ARG_RENAMES, TrainConfig)
from orchestrator.train.remote_code import CONFIG_KEY, require_imports, require_trust


def check_generation(cfg: TrainConfig, prov: Provenance, on_controller: bool) -> None:
    """Ranges of `generation:` and what generating needs (stage sft, an eval set, the test file)."""
    g = cfg.generation
    rules = {"max_new_tokens": (g.max_new_tokens >= 1, "a positive integer"),
             "num_beams": (g.num_beams >= 1, "a positive integer"),
             "temperature": (g.temperature > 0, "a number above 0"),
             "top_p": (0 < g.top_p <= 1, "in (0, 1]"),
             "top_k": (g.top_k >= 0, "an integer >= 0"),
             "repetition_penalty": (g.repetition_penalty > 0, "a number above 0"),
             "max_samples": (g.max_samples is None or g.max_samples >= 1, "a positive integer or null")}
    for key, (ok, rule) in rules.items():
        if not ok:
            raise ConfigError(f"{prov.name('generation.' + key)}: must be {rule} (got {getattr(g, key)!r})")
    wanted = [k for k, on in (("generation.predict_with_generate", g.predict_with_generate),
                              ("data.test", bool(cfg.data.test))) if on]
    if wanted and cfg.stage != "sft":
        raise ConfigError(f"{prov.name(wanted[0])}: generation needs stage: sft (got {cfg.stage})")
    if g.predict_with_generate and not (cfg.data.eval or cfg.data.eval_ratio):
        raise ConfigError(f"{prov.name('generation.predict_with_generate')}: needs an eval set "
                          "(data.eval or data.eval_ratio)")
    if cfg.data.test:
        must_exist(cfg.data.test, cfg.data_dir, prov.name("data.test"), on_controller)


def _check_template(value: Union[str, dict], on_controller: bool) -> None:
    """`data.template`: a known name, an existing template file or valid role formats (the controller leaves
    absolute paths to the nodes)."""
    from orchestrator.errors import DataError
    from orchestrator.train.data.templates import parse_template

    if on_controller and isinstance(value, str) and Path(value).expanduser().is_absolute():
        return
    try:
        parse_template(value, "data.template")
    except DataError as exc:
        raise ConfigError(str(exc)) from None


def check(cfg: TrainConfig, on_controller: bool = False, stack_checks: bool = True) -> None:
    """Cross-field checks and file existence (with `stack_checks`, also against transformers); the messages name
    the key."""
    if not cfg.data.train:
        raise ConfigError("data.train: at least one training file is required")
    cfg.data.eval = cfg.data.eval or []
    _check_data(cfg, on_controller)
    _check_template(cfg.data.template, on_controller)
    if Path(cfg.model).expanduser().is_dir():
        cfg.model = str(Path(cfg.model).expanduser().resolve())  # adapters then record an absolute base path
    elif cfg.model.startswith(".") or (cfg.model.startswith(("/", "~")) and not on_controller):
        raise ConfigError(f"model: folder not found: {cfg.model}")
    if stack_checks:  # which code a folder runs depends on the node's transformers: checked there
        if require_trust(cfg.trust_remote_code, CONFIG_KEY, model=cfg.model, tokenizer=cfg.model) and \
                not on_controller:
            require_imports(cfg.model)  # the folder's code imports (sentencepiece, tiktoken, ...) are installed
    if cfg.lora.r < 1:
        raise ConfigError(f"lora.r: must be a positive integer (got {cfg.lora.r})")
    if not 0.0 <= cfg.lora.dropout < 1.0:
        raise ConfigError(f"lora.dropout: must be in [0, 1) (got {cfg.lora.dropout})")
    _check_prompt(cfg)
    if not 0.0 < cfg.freeze.trainable_fraction <= 1.0:
        raise ConfigError(f"freeze.trainable_fraction: must be in (0, 1] (got {cfg.freeze.trainable_fraction})")
    _check_lora(cfg)
    _check_self_cognition(cfg)
    cfg.training_args = _normalise_training_args(cfg, check_names=stack_checks)
    _check_deepspeed(cfg, on_controller)
    if evaluates(cfg.training_args) and not cfg.data.eval and not cfg.data.eval_ratio:
        key = "eval_strategy" if "eval_strategy" in cfg.training_args else "evaluation_strategy"
        raise ConfigError(f"training_args.{key}: evaluation needs data.eval or data.eval_ratio")
    cfg.resume_from_checkpoint = _normalise_resume(cfg.resume_from_checkpoint)
    if cfg.resume_from_checkpoint is None and os.environ.get("ORCH_RESUME"):  # a restart by `orch launch`
        cfg.resume_from_checkpoint = _normalise_resume(os.environ["ORCH_RESUME"])


def _check_data(cfg: TrainConfig, on_controller: bool) -> None:
    """Data entries (paths or `{path, columns, keep_language}`), limits and sample counts."""
    from orchestrator.errors import DataError
    from orchestrator.train.data.entries import parse_entry

    d = cfg.data
    for key, entries in (("data.train", d.train), ("data.eval", d.eval)):
        for i, value in enumerate(entries):
            try:
                entry = parse_entry(value, f"{key}[{i}]")
            except DataError as exc:
                raise ConfigError(str(exc)) from None
            must_exist(entry.path, cfg.data_dir, f"{key}[{i}]", on_controller)
    if not 0.0 <= d.eval_ratio < 1.0:
        raise ConfigError(f"data.eval_ratio: must be in [0, 1) (got {d.eval_ratio})")
    if d.max_length != -1 and d.max_length < 8:
        raise ConfigError(f"data.max_length: must be at least 8, or -1 for no limit (got {d.max_length})")
    if d.max_length == -1 and d.packing:
        raise ConfigError("data.packing: packing fills rows up to max_length; set a max_length (not -1)")
    for key in ("train_samples", "eval_samples"):
        if getattr(d, key) != -1 and getattr(d, key) < 1:
            raise ConfigError(f"data.{key}: must be a positive number of samples, or -1 for all "
                              f"(got {getattr(d, key)})")
    for key in ("max_input_length", "max_output_length"):
        if getattr(d, key) is not None and getattr(d, key) < 1:
            raise ConfigError(f"data.{key}: must be a positive number of tokens (got {getattr(d, key)})")


def _check_lora(cfg: TrainConfig) -> None:
    """ms-swift's target names (`ALL`, `DEFAULT`) and the adapter dtype."""
    lc = cfg.lora
    if isinstance(lc.target_modules, str) and lc.target_modules.upper() in LORA_TARGETS:
        lc.target_modules = LORA_TARGETS[lc.target_modules.upper()]
    lc.dtype = lc.dtype.lower()
    if lc.dtype not in LORA_DTYPES:
        raise ConfigError(f"lora.dtype: expected one of {', '.join(LORA_DTYPES)} (got {lc.dtype!r})")


def _check_self_cognition(cfg: TrainConfig) -> None:
    """A sample count needs a name and an author (one, or [Chinese, English])."""
    sc = cfg.self_cognition
    if sc.samples < 0:
        raise ConfigError(f"self_cognition.samples: must be 0 or more (got {sc.samples})")
    for key in ("name", "author"):
        value = getattr(sc, key)
        if sc.samples and not value:
            raise ConfigError(f"self_cognition.{key}: required when self_cognition.samples is set "
                              "(one string, or [Chinese, English])")
        if isinstance(value, list) and not 1 <= len(value) <= 2:
            raise ConfigError(f"self_cognition.{key}: expected one name or two ([Chinese, English]), got {value!r}")


def _check_deepspeed(cfg: TrainConfig, on_controller: bool) -> None:
    """A preset (ms-swift's names too), an existing .json file, or an inline mapping."""
    if not isinstance(cfg.deepspeed, str):
        return
    cfg.deepspeed = DEEPSPEED_ALIASES.get(cfg.deepspeed, cfg.deepspeed)
    if cfg.deepspeed in DEEPSPEED_PRESETS:
        return
    on_nodes_only = on_controller and Path(cfg.deepspeed).expanduser().is_absolute()
    if not cfg.deepspeed.endswith(".json") or not (on_nodes_only or Path(cfg.deepspeed).is_file()):
        raise ConfigError(f"deepspeed: expected one of {', '.join(DEEPSPEED_PRESETS)} (ms-swift's "
                          f"{', '.join(DEEPSPEED_ALIASES)} too) or an existing .json file (got {cfg.deepspeed!r})")


def _check_prompt(cfg: TrainConfig) -> None:
    """Virtual-token adapters: a positive count, and no packing (packed samples would share one prefix)."""
    if cfg.prompt.num_virtual_tokens < 1:
        raise ConfigError(f"prompt.num_virtual_tokens: must be a positive integer "
                          f"(got {cfg.prompt.num_virtual_tokens})")
    if cfg.finetuning in PROMPT_FINETUNING and cfg.data.packing:
        raise ConfigError(f"data.packing: finetuning {cfg.finetuning} puts virtual tokens before each row, so packed "
                          "samples would share them; set packing: false")


def _normalise_training_args(cfg: TrainConfig, check_names: bool = True) -> dict:
    """Apply aliases, lift `deepspeed`/`resume_from_checkpoint` to the top level, and reject unknown names
    (`check_names`: against the installed transformers/trl)."""
    args = dict(cfg.training_args)
    for old, new in TRAINING_ARG_RENAMES.items():
        if old in args and new in args:
            cfg.warnings.append(f"training_args.{old}: ignored (training_args.{new} is set)")
            args.pop(old)
    if "logging_dir" in args:
        logging_dir = os.path.abspath(str(args.pop("logging_dir")))
        if os.environ.setdefault("TENSORBOARD_LOGGING_DIR", logging_dir) != logging_dir:
            cfg.warnings.append("training_args.logging_dir: ignored ($TENSORBOARD_LOGGING_DIR is set)")
    if args.pop("sortish_sampler", False):
        cfg.warnings.append("training_args.sortish_sampler: ignored (a Seq2SeqTrainer option; orch's Trainer "
                            "draws batches at random)")
    for key in ("deepspeed", "resume_from_checkpoint"):
        if key in args:
            value = args.pop(key)
            if getattr(cfg, key) is None:
                setattr(cfg, key, value)
            elif getattr(cfg, key) != value:
                cfg.warnings.append(f"training_args.{key}: ignored (the top-level {key}: is set)")
    if not check_names:
        return args
    names = training_arg_names(cfg.stage)
    args = renamed_args(args, set(names))
    reject_unknown(args, set(names), "training_args.")
    for key, value in args.items():
        if isinstance(value, str) and isinstance(names[key], float):
            args[key] = coerce(value, float, "training_args." + key)  # YAML reads `1e-4` as a string
    return args


def evaluates(args: dict) -> bool:
    """Whether `training_args` asks for evaluations (under either name of the eval strategy)."""
    value = args.get("eval_strategy", args.get("evaluation_strategy", "no"))
    return str(value) not in ("no", "IntervalStrategy.NO")


def renamed_args(args: dict, known: set[str]) -> dict:
    """`args` with each name of TRAINING_ARG_RENAMES spelt the way the installed release knows it (the guide's
    `evaluation_strategy` stays on 4.40, becomes `eval_strategy` from 4.46 on), values converted where the two
    names take different forms (a warmup fraction; include_for_metrics' list)."""
    out = dict(args)
    for old, new in TRAINING_ARG_RENAMES.items():
        if old in out and old not in known and new in known:
            value = out.pop(old)
            out[new] = (["inputs"] if value else []) if old == "include_inputs_for_metrics" else value
        elif new in out and old in known and (new not in known or new == "warmup_steps"):  # 4.x: steps only
            value = out[new]
            if new == "include_for_metrics":
                value = "inputs" in (value or [])
            elif new == "warmup_steps" and not (isinstance(value, float) and 0 < value < 1):
                continue  # a step count: warmup_steps exists on every release
            out[old] = value
            del out[new]
    return out


def _normalise_resume(value: Any) -> str | int | None:
    """`yes`/`true`/`latest` -> "latest"; `no`/`false`/empty -> None; an int or numeric string -> step number."""
    if value is None or value is False or value in ("", "no", "false", "none"):
        return None
    if value is True or value in ("yes", "true", "latest"):
        return "latest"
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    return str(value)


def training_arg_names(stage: str) -> dict[str, Any]:
    """Field names -> defaults of the installed `TrainingArguments` (or trl's `DPOConfig` for `stage: dpo`)."""
    if stage == "dpo":
        from trl import DPOConfig as cls
    else:
        from transformers.training_args import TrainingArguments as cls
    return {f.name: f.default for f in dataclasses.fields(cls) if f.init}


def must_exist(path: str, base: str, key: str, on_controller: bool = False) -> None:
    """Raise naming `key` when the data file or folder `path` (relative to `base`) does not exist; on the
    controller an absolute path is left to the nodes (the launch preflight checks it there)."""
    full = Path(base, path).expanduser()
    if on_controller and full.is_absolute():
        return
    if not found(full):
        posix = Path(base, str(path).replace("\\", "/")).expanduser()
        hint = f" (paths take /, not \\: {posix})" if "\\" in str(path) and found(posix) else ""
        raise ConfigError(f"{key}: file not found: {full}{hint}")

