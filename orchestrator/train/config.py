"""Training config: YAML -> dataclasses, validated before any model is loaded.

Two layouts are accepted:
- ours: `model`, `stage`, `finetuning`, `data`, `lora`, `qlora`, `freeze`, `dpo`, `deepspeed`,
  `resume_from_checkpoint`, `training_args` (passed through to HF `TrainingArguments`);
- the ChatGLM3 finetune layout: `data_config: {train_file, val_file, test_file, num_proc}`, `max_input_length`,
  `max_output_length`, `training_args`, `peft_config: {peft_type: LORA, ...}`; it is translated into ours.

Every mistake raises `ConfigError` naming the file and the key (`lora.r: ...`). Relative paths resolve against the
current working directory (what torchrun's workers share on every node); data files against `--data-dir` if given.
Only `training_args` key names are checked here (against the installed `TrainingArguments`); their values are
checked by `arguments.check_training_args`, which builds a throwaway `TrainingArguments`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from orchestrator.errors import ConfigError

STAGES = ("pt", "sft", "dpo")
FINETUNING = ("full", "lora", "qlora", "freeze")
DEEPSPEED_PRESETS = ("zero2", "zero3", "zero3_offload")

# Old or Seq2Seq-only TrainingArguments names that configs written for older transformers still carry.
TRAINING_ARG_ALIASES = {"evaluation_strategy": "eval_strategy", "warmup_ratio": "warmup_steps"}
IGNORED_TRAINING_ARGS = ("predict_with_generate", "generation_config", "generation_max_length",
                         "generation_num_beams", "sortish_sampler", "logging_dir")


@dataclass
class DataSection:
    """`data:` (mirrors the data pipeline's `DataSpec`, minus `base_dir`, which comes from `--data-dir`)."""

    train: list[str]
    eval: str | None = None
    eval_ratio: float = 0.0
    template: str = "chatml"
    max_length: int = 1024
    truncation_strategy: Literal["delete", "left", "right"] = "delete"
    packing: bool = False
    skip_bad: bool = False
    cache_dir: str | None = None
    seed: int = 42


@dataclass
class LoraSection:
    """`lora:` adapter shape; `target_modules` is a list of module names or `all-linear`."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: Union[str, list[str]] = "all-linear"
    modules_to_save: list[str] | None = None


@dataclass
class QLoraSection:
    """`qlora:` how the frozen base is quantized (bitsandbytes)."""

    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    double_quant: bool = True


@dataclass
class FreezeSection:
    """`freeze:` train the top `trainable_fraction` of the decoder layers plus parameters matching `extra_trainable`."""

    trainable_fraction: float = 0.25
    extra_trainable: list[str] = field(default_factory=list)


@dataclass
class DpoSection:
    """`dpo:` preference-optimisation knobs passed to trl's `DPOConfig`."""

    beta: float = 0.1
    loss_type: str = "sigmoid"


@dataclass
class TrainConfig:
    """A validated training config; `source` is the YAML file it came from."""

    model: str
    data: DataSection
    stage: Literal["pt", "sft", "dpo"] = "sft"
    finetuning: Literal["full", "lora", "qlora", "freeze"] = "lora"
    lora: LoraSection = field(default_factory=LoraSection)
    qlora: QLoraSection = field(default_factory=QLoraSection)
    freeze: FreezeSection = field(default_factory=FreezeSection)
    dpo: DpoSection = field(default_factory=DpoSection)
    deepspeed: Union[str, dict, None] = None
    resume_from_checkpoint: Any = None  # YAML reads `yes` as True: normalised by _normalise_resume
    training_args: dict = field(default_factory=dict)
    data_dir: str = "."
    source: str = "<config>"

    @property
    def output_dir(self) -> str:
        """The absolute output folder. A relative path resolves against $ORCH_OUTPUT_ROOT when orch launched the
        job (a folder per project that outlives the per-job code snapshot, so restarts find the checkpoints),
        else against the current working directory."""
        path = self.training_args.get("output_dir", "output")
        root = os.environ.get("ORCH_OUTPUT_ROOT")
        if root and not os.path.isabs(path):
            path = os.path.join(root, path)
        return os.path.abspath(path)


def load_config(path: str | os.PathLike, model: str | None = None, data_dir: str | None = None,
                on_controller: bool = False) -> TrainConfig:
    """Read and validate a YAML config; `model` and `data_dir` override the config (the command line wins).

    `on_controller`: the check `orch launch` runs before anything starts, on a machine that may lack the nodes'
    absolute paths and transformers: those paths and the `training_args` names are left to the worker."""
    src = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{src}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{src}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: the config must be a mapping of keys to values")
    if "data_config" in raw or "peft_config" in raw:
        raw = translate_chatglm3(raw, src)
    if model:
        raw["model"] = model
    try:
        cfg = _build(TrainConfig, {**raw, "source": src, "data_dir": data_dir or raw.get("data_dir", ".")}, "")
        _check(cfg, on_controller)
    except ConfigError as exc:
        raise ConfigError(f"{src}: {exc}") from None
    return cfg


def translate_chatglm3(raw: dict, src: str) -> dict:
    """Turn the ChatGLM3 finetune layout into ours (the LoRA `peft_config` becomes `lora:`)."""
    known = {"data_config", "max_input_length", "max_output_length", "training_args", "peft_config", "model",
             "stage", "deepspeed", "resume_from_checkpoint", "data_dir"}
    _reject_unknown(raw, known, "")
    dc = raw.get("data_config") or {}
    _reject_unknown(dc, {"train_file", "val_file", "test_file", "num_proc"}, "data_config.")
    if "train_file" not in dc:
        raise ConfigError(f"{src}: data_config.train_file: required")
    out: dict[str, Any] = {k: raw[k] for k in ("model", "stage", "deepspeed", "resume_from_checkpoint", "data_dir")
                           if k in raw}
    max_len = int(raw.get("max_input_length", 512)) + int(raw.get("max_output_length", 512))
    out["data"] = {"train": dc["train_file"], "max_length": max_len, "truncation_strategy": "right"}
    if dc.get("val_file"):
        out["data"]["eval"] = dc["val_file"]
    out["training_args"] = dict(raw.get("training_args") or {})
    peft = dict(raw.get("peft_config") or {})
    if not peft:
        out["finetuning"] = "full"
        return out
    peft_type = str(peft.pop("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise ConfigError(f"{src}: peft_config.peft_type: only LORA is supported (got {peft_type!r})")
    peft.pop("task_type", None)
    names = {"r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "target_modules": "target_modules"}
    _reject_unknown(peft, set(names), "peft_config.")
    out["finetuning"] = "lora"
    out["lora"] = {names[k]: v for k, v in peft.items()}
    return out


def _check(cfg: TrainConfig, on_controller: bool = False) -> None:
    """Cross-field checks and file existence; the messages name the key."""
    if not cfg.data.train:
        raise ConfigError("data.train: at least one training file is required")
    for i, p in enumerate(cfg.data.train):
        _must_exist(p, cfg.data_dir, f"data.train[{i}]", on_controller)
    if cfg.data.eval:
        _must_exist(cfg.data.eval, cfg.data_dir, "data.eval", on_controller)
    if not 0.0 <= cfg.data.eval_ratio < 1.0:
        raise ConfigError(f"data.eval_ratio: must be in [0, 1) (got {cfg.data.eval_ratio})")
    if cfg.data.max_length < 8:
        raise ConfigError(f"data.max_length: must be at least 8 (got {cfg.data.max_length})")
    if Path(cfg.model).expanduser().is_dir():
        cfg.model = str(Path(cfg.model).expanduser().resolve())  # adapters then record an absolute base path
    elif cfg.model.startswith(".") or (cfg.model.startswith(("/", "~")) and not on_controller):
        raise ConfigError(f"model: folder not found: {cfg.model}")
    if cfg.lora.r < 1:
        raise ConfigError(f"lora.r: must be a positive integer (got {cfg.lora.r})")
    if not 0.0 <= cfg.lora.dropout < 1.0:
        raise ConfigError(f"lora.dropout: must be in [0, 1) (got {cfg.lora.dropout})")
    if not 0.0 < cfg.freeze.trainable_fraction <= 1.0:
        raise ConfigError(f"freeze.trainable_fraction: must be in (0, 1] (got {cfg.freeze.trainable_fraction})")
    if isinstance(cfg.deepspeed, str) and cfg.deepspeed not in DEEPSPEED_PRESETS:
        on_nodes_only = on_controller and Path(cfg.deepspeed).expanduser().is_absolute()
        if not cfg.deepspeed.endswith(".json") or not (on_nodes_only or Path(cfg.deepspeed).is_file()):
            raise ConfigError(f"deepspeed: expected one of {', '.join(DEEPSPEED_PRESETS)} or an existing .json file "
                              f"(got {cfg.deepspeed!r})")
    cfg.training_args = _normalise_training_args(cfg, check_names=not on_controller)
    wants_eval = str(cfg.training_args.get("eval_strategy", "no")) not in ("no", "IntervalStrategy.NO")
    if wants_eval and not cfg.data.eval and not cfg.data.eval_ratio:
        raise ConfigError("training_args.eval_strategy: evaluation needs data.eval or data.eval_ratio")
    cfg.resume_from_checkpoint = _normalise_resume(cfg.resume_from_checkpoint)
    if cfg.resume_from_checkpoint is None and os.environ.get("ORCH_RESUME"):  # a restart by `orch launch`
        cfg.resume_from_checkpoint = _normalise_resume(os.environ["ORCH_RESUME"])


def _normalise_training_args(cfg: TrainConfig, check_names: bool = True) -> dict:
    """Apply aliases, lift `deepspeed`/`resume_from_checkpoint` to the top level, and reject unknown names
    (`check_names`: against the installed transformers/trl)."""
    args = dict(cfg.training_args)
    for old, new in TRAINING_ARG_ALIASES.items():
        if old in args:
            args.setdefault(new, args.pop(old))
    if "logging_dir" in args:
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", os.path.abspath(str(args["logging_dir"])))
    for name in IGNORED_TRAINING_ARGS:
        args.pop(name, None)
    if "deepspeed" in args:
        if cfg.deepspeed is None:
            cfg.deepspeed = args["deepspeed"]
        args.pop("deepspeed")
    if "resume_from_checkpoint" in args:
        if cfg.resume_from_checkpoint is None:
            cfg.resume_from_checkpoint = args["resume_from_checkpoint"]
        args.pop("resume_from_checkpoint")
    if not check_names:
        return args
    names = training_arg_names(cfg.stage)
    _reject_unknown(args, set(names), "training_args.")
    for key, value in args.items():
        if isinstance(value, str) and isinstance(names[key], float):
            args[key] = _coerce(value, float, "training_args." + key)  # YAML reads `1e-4` as a string
    return args


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


def _must_exist(path: str, base: str, key: str, on_controller: bool = False) -> None:
    """Raise naming `key` when the data file or folder `path` (relative to `base`) does not exist; on the
    controller an absolute path is left to the nodes (the launch preflight checks it there)."""
    full = Path(base, path).expanduser()
    if on_controller and full.is_absolute():
        return
    if not full.exists():
        raise ConfigError(f"{key}: file not found: {full}")


def _reject_unknown(raw: dict, known: set[str], prefix: str) -> None:
    """Raise for the first key of `raw` not in `known`, suggesting the closest known name."""
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ConfigError(f"{prefix}{key}: unknown key{hint}")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    """Build dataclass `cls` from mapping `raw`, checking key names, required keys and value types."""
    where = prefix.rstrip(".") or "config"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping (got {type(raw).__name__})")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _reject_unknown(raw, set(fields), prefix)
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _coerce(raw[name], hints[name], prefix + name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{prefix}{name}: required key missing")
    return cls(**values)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check (and lightly convert) one value against a type hint; the error names `key`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[-1] if len(errors) == 1 else f"{key}: unsupported value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, args))} (got {value!r})")
        return value
    if origin is list:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ConfigError(f"{key}: expected a list (got {value!r})")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(items)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false (got {value!r})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer (got {value!r})")
        return value
    if tp is float:
        if isinstance(value, str):
            try:
                value = float(value)  # YAML reads `1e-4` (no dot) as a string
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number (got {value!r})")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected a string (got {value!r})")
        return str(value)
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping (got {value!r})")
        return dict(value)
    return value
