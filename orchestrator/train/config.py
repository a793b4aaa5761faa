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
from orchestrator.train.config_aliases import lift_swift_keys, renamed
from orchestrator.train.config_notes import Provenance, unused_keys
from orchestrator.train.data.templates import DEFAULT_TEMPLATE
from orchestrator.train.remote_code import CONFIG_KEY, require_trust

STAGES = ("pt", "sft", "dpo")
FINETUNING = ("full", "lora", "qlora", "freeze", "prefix", "ptuning")
PROMPT_FINETUNING = ("prefix", "ptuning")  # virtual-token adapters: P-Tuning v2 (prefix tuning) and P-Tuning
DEEPSPEED_PRESETS = ("zero2", "zero3", "zero3_offload")
DEEPSPEED_ALIASES = {"default-zero2": "zero2", "default-zero3": "zero3", "zero3-offload": "zero3_offload"}  # ms-swift
LORA_TARGETS = {"ALL": "all-linear", "DEFAULT": None}  # ms-swift's names: every linear layer, peft's per-model default
LORA_DTYPES = ("auto", "fp32", "bf16", "fp16")

# Old or Seq2Seq-only TrainingArguments names that configs written for older transformers still carry.
TRAINING_ARG_ALIASES = {"evaluation_strategy": "eval_strategy", "warmup_ratio": "warmup_steps"}
# Seq2SeqTrainingArguments' generation names -> keys of our `generation:` section (HF's Trainer has none of them).
GENERATION_TRAINING_ARGS = {"predict_with_generate": "predict_with_generate", "generation_num_beams": "num_beams",
                            "generation_max_length": "max_new_tokens"}


@dataclass
class DataSection:
    """`data:` (mirrors the data pipeline's `DataSpec`, minus `base_dir`, which comes from `--data-dir`).
    An entry of `train`/`eval` is a path or `{path, columns, keep_language}` (data/entries.py)."""

    train: list[Union[str, dict]]
    eval: Union[list[Union[str, dict]], None] = None  # one file or several
    test: str | None = None  # generated on after training: predictions_test.jsonl + ROUGE/BLEU (stage sft)
    eval_ratio: float = 0.0
    template: Union[str, dict] = DEFAULT_TEMPLATE  # a name, a .jinja file or role formats: data/templates.py
    max_length: int = 1024
    truncation_strategy: Literal["delete", "left", "right"] = "delete"
    packing: bool = False
    skip_bad: bool = False
    cache_dir: str | None = None
    seed: int = 42
    train_samples: int = -1  # take this many training samples (seeded draw; -1: all)
    eval_samples: int = -1  # the same for the eval set
    system: str | None = None  # the system prompt of samples that have none
    max_input_length: int | None = None  # ChatGLM3: the input and the output are cut separately
    max_output_length: int | None = None


@dataclass
class LoraSection:
    """`lora:` adapter shape; `target_modules` is a list of module names, `all-linear` (ms-swift: `ALL`) or
    `default` (peft's choice for the model type; ms-swift: `DEFAULT`); `dtype` the adapter weights' dtype."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: Union[str, list[str], None] = "all-linear"
    modules_to_save: list[str] | None = None
    dtype: str = "auto"  # auto (float32) | fp32 | bf16 | fp16


@dataclass
class SelfCognitionSection:
    """`self_cognition:` identity Q/A samples mixed into the training data (`samples` of them; 0: none). `name` and
    `author` are one string, or [Chinese, English] as ms-swift's `model_name` / `model_author`."""

    samples: int = 0
    name: Union[str, list[str], None] = None
    author: Union[str, list[str], None] = None


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
class PromptSection:
    """`prompt:` virtual tokens for `finetuning: prefix` (P-Tuning v2: learned keys/values at every layer) and
    `finetuning: ptuning` (P-Tuning: learned input embeddings from a small encoder)."""

    num_virtual_tokens: int = 128
    prefix_projection: bool = False  # prefix: reparameterise through a 2-layer MLP (more parameters, steadier)
    encoder_hidden_size: Union[int, None] = None  # the MLP/encoder width (default: the model's hidden size)


@dataclass
class DpoSection:
    """`dpo:` preference-optimisation knobs passed to trl's `DPOConfig`."""

    beta: float = 0.1
    loss_type: str = "sigmoid"


@dataclass
class GenerationSection:
    """`generation:` generation-based evaluation (ROUGE-1/2/L, BLEU-4 on generated answers, like ChatGLM3's
    finetune_hf.py) at every evaluation when `predict_with_generate`, and on `data.test` after training."""

    predict_with_generate: bool = False
    max_new_tokens: int = 256
    num_beams: int = 1
    do_sample: bool = False  # false: greedy (num_beams 1) or beam search
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50
    repetition_penalty: float = 1.0
    max_samples: Union[int, None] = None  # generate on the first N eval prompts only (the test set: all)


@dataclass
class TrainConfig:
    """A validated training config; `source` is the YAML file it came from."""

    model: str
    data: DataSection
    stage: Literal["pt", "sft", "dpo"] = "sft"
    finetuning: Literal["full", "lora", "qlora", "freeze", "prefix", "ptuning"] = "lora"
    lora: LoraSection = field(default_factory=LoraSection)
    qlora: QLoraSection = field(default_factory=QLoraSection)
    freeze: FreezeSection = field(default_factory=FreezeSection)
    prompt: PromptSection = field(default_factory=PromptSection)
    dpo: DpoSection = field(default_factory=DpoSection)
    generation: GenerationSection = field(default_factory=GenerationSection)
    self_cognition: SelfCognitionSection = field(default_factory=SelfCognitionSection)
    versioned_output_dir: bool = False  # a new `v<N>-<time>` folder under output_dir per run (ms-swift's suffix)
    deepspeed: Union[str, dict, None] = None
    resume_from_checkpoint: Any = None  # YAML reads `yes` as True: normalised by _normalise_resume
    trust_remote_code: bool = False  # run the model folder's own code (ChatGLM3, Qwen v1, FM9G)
    training_args: dict = field(default_factory=dict)
    data_dir: str = "."
    source: str = "<config>"
    warnings: list[str] = field(default_factory=list, metadata={"internal": True})  # keys without effect

    @property
    def output_dir(self) -> str:
        """The absolute output folder. A relative path resolves against $ORCH_OUTPUT_ROOT when orch launched the
        job (a folder per project that outlives the per-job code snapshot, so restarts find the checkpoints),
        else against the current working directory."""
        path = self.training_args.get("output_dir", "output")
        root = os.environ.get("ORCH_OUTPUT_ROOT")
        if root and not os.path.isabs(path):
            path = os.path.join(root, path)
        if self.versioned_output_dir:
            from orchestrator.train.output_dirs import versioned

            return versioned(os.path.abspath(path))
        return os.path.abspath(path)


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
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{src}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{src}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: the config must be a mapping of keys to values")
    prov = Provenance()
    try:
        if "data_config" in raw or "peft_config" in raw:
            raw = translate_chatglm3(raw, prov)
        else:
            raw = lift_swift_keys(raw, prov)
            _lift_generation(raw, prov)
        if model:
            raw["model"] = model
        if deepspeed:
            raw["deepspeed"] = deepspeed
        if resume:
            raw["resume_from_checkpoint"] = resume
        if trust_remote_code:
            raw["trust_remote_code"] = True
        cfg = _build(TrainConfig, {**raw, "source": src, "data_dir": data_dir or raw.get("data_dir", ".")}, "")
        _check(cfg, on_controller, not on_controller if stack_checks is None else stack_checks)
        _check_generation(cfg, prov, on_controller)
        unused_keys(raw, cfg, prov)
        cfg.warnings = prov.warnings + cfg.warnings
    except ConfigError as exc:
        raise ConfigError(f"{src}: {renamed(str(exc), prov)}") from None
    return cfg


CHATGLM3_PROMPT_TYPES = {"PREFIX_TUNING": "prefix", "P_TUNING": "ptuning"}  # peft_config.peft_type -> finetuning


def translate_chatglm3(raw: dict, prov: Provenance | None = None) -> dict:
    """Turn the ChatGLM3 finetune layout into ours (`peft_config` becomes `lora:`, or `prompt:` for PREFIX_TUNING
    (P-Tuning v2) and P_TUNING). `test_file` becomes `data.test`; generation defaults follow finetune_hf.py (answers
    up to `max_output_length` tokens, the first 50 eval prompts); `load_config` lifts `training_args`' generation
    names into `generation:`. Notes on keys without effect go into `prov`."""
    prov = prov if prov is not None else Provenance()
    known = {"data_config", "max_input_length", "max_output_length", "training_args", "peft_config", "model",
             "stage", "deepspeed", "resume_from_checkpoint", "data_dir", "trust_remote_code"}
    _reject_unknown(raw, known, "")
    dc = raw.get("data_config") or {}
    _reject_unknown(dc, {"train_file", "val_file", "test_file", "num_proc"}, "data_config.")
    if "train_file" not in dc:
        raise ConfigError("data_config.train_file: required")
    out: dict[str, Any] = {k: raw[k] for k in ("model", "stage", "deepspeed", "resume_from_checkpoint", "data_dir",
                                               "trust_remote_code") if k in raw}
    max_in, max_out = int(raw.get("max_input_length", 512)), int(raw.get("max_output_length", 512))
    out["data"] = {"train": dc["train_file"], "max_length": max_in + max_out, "truncation_strategy": "right",
                   "max_input_length": max_in, "max_output_length": max_out}
    if dc.get("val_file"):
        out["data"]["eval"] = dc["val_file"]
    if dc.get("test_file"):
        out["data"]["test"] = dc["test_file"]
        prov.origin["data.test"] = "data_config.test_file"
    if "num_proc" in dc:
        prov.warn("data_config.num_proc", "ignored (orch tokenizes each file once, in parallel, on its own)")
    out["training_args"] = dict(raw.get("training_args") or {})
    _lift_generation(out, prov)
    out["generation"] = {"max_new_tokens": int(raw.get("max_output_length", 512)), "max_samples": 50,
                         **out.get("generation", {})}
    peft = dict(raw.get("peft_config") or {})
    if not peft:
        out["finetuning"] = "full"
        return out
    peft_type = str(peft.pop("peft_type", "LORA")).upper()
    task_type = str(peft.pop("task_type", "CAUSAL_LM")).upper()
    if task_type != "CAUSAL_LM":
        prov.warn("peft_config.task_type", f"{task_type} ignored (orch trains causal language models: CAUSAL_LM)")
    if peft_type in CHATGLM3_PROMPT_TYPES:
        _reject_unknown(peft, set(PromptSection.__dataclass_fields__),
                        "peft_config.")
        out["finetuning"] = CHATGLM3_PROMPT_TYPES[peft_type]
        out["prompt"] = peft
        return out
    if peft_type != "LORA":
        known = ", ".join(["LORA", *CHATGLM3_PROMPT_TYPES])
        raise ConfigError(f"peft_config.peft_type: expected one of {known} (got {peft_type!r})")
    names = {"r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "target_modules": "target_modules"}
    _reject_unknown(peft, set(names), "peft_config.")
    out["finetuning"] = "lora"
    out["lora"] = {names[k]: v for k, v in peft.items()}
    return out


def _lift_generation(raw: dict, prov: Provenance) -> None:
    """Move Seq2SeqTrainingArguments' generation names (`predict_with_generate`, `generation_config`,
    `generation_num_beams`, `generation_max_length`) from `training_args` into `generation:`, each checked under the
    name the user wrote; a value set both ways is refused."""
    gen, args = raw.get("generation", {}), raw.get("training_args")
    if not isinstance(gen, dict) or not isinstance(args, dict):
        return  # _build names the key that is not a mapping
    for key in gen:
        prov.origin.setdefault(f"generation.{key}", f"generation.{key}")
    args = raw["training_args"] = dict(args)
    lifted: dict[str, tuple[Any, str]] = {}
    if "generation_config" in args:
        given = args.pop("generation_config")
        section = _build(GenerationSection, given, "training_args.generation_config.")
        lifted.update({k: (getattr(section, k), f"training_args.generation_config.{k}") for k in given})
    hints = typing.get_type_hints(GenerationSection)
    for name, key in GENERATION_TRAINING_ARGS.items():
        if name in args:
            where = f"training_args.{name}"
            if key in lifted:
                raise ConfigError(f"{where}: also set as {lifted[key][1]}; keep one")
            lifted[key] = (_coerce(args.pop(name), hints[key], where), where)
            if name == "generation_max_length":
                prov.warn(where, "read as generation.max_new_tokens (orch caps the generated tokens, not prompt + "
                                 "answer)")
    for key, (value, where) in lifted.items():
        if f"generation.{key}" in prov.origin:
            raise ConfigError(f"{where}: also set as {prov.origin[f'generation.{key}']}; keep one")
        prov.origin[f"generation.{key}"] = where
    if lifted:
        raw["generation"] = {**gen, **{key: value for key, (value, _) in lifted.items()}}


def _check_generation(cfg: TrainConfig, prov: Provenance, on_controller: bool) -> None:
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
        _must_exist(cfg.data.test, cfg.data_dir, prov.name("data.test"), on_controller)


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


def _check(cfg: TrainConfig, on_controller: bool = False, stack_checks: bool = True) -> None:
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
        require_trust(cfg.trust_remote_code, CONFIG_KEY, model=cfg.model, tokenizer=cfg.model)
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
    wants_eval = str(cfg.training_args.get("eval_strategy", "no")) not in ("no", "IntervalStrategy.NO")
    if wants_eval and not cfg.data.eval and not cfg.data.eval_ratio:
        raise ConfigError("training_args.eval_strategy: evaluation needs data.eval or data.eval_ratio")
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
            _must_exist(entry.path, cfg.data_dir, f"{key}[{i}]", on_controller)
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
    for old, new in TRAINING_ARG_ALIASES.items():
        if old in args:
            if new in args:
                cfg.warnings.append(f"training_args.{old}: ignored (training_args.{new} is set)")
            args.setdefault(new, args.pop(old))
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
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
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
