"""What a training config holds: its sections as typed dataclasses, and the names each key accepts."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from orchestrator.train.data import DEFAULT_TEMPLATE

STAGES = ("pt", "sft", "dpo")
FINETUNING = ("full", "lora", "qlora", "freeze", "prefix", "ptuning")
PROMPT_FINETUNING = ("prefix", "ptuning")  # virtual-token adapters: P-Tuning v2 (prefix tuning) and P-Tuning
DEEPSPEED_PRESETS = ("zero2", "zero3", "zero3_offload")
DEEPSPEED_ALIASES = {"default-zero2": "zero2", "default-zero3": "zero3", "zero3-offload": "zero3_offload"}  # ms-swift
LORA_TARGETS = {"ALL": "all-linear", "DEFAULT": None}  # ms-swift's names: every linear layer, peft's per-model default
LORA_DTYPES = ("auto", "fp32", "bf16", "fp16")

# TrainingArguments names renamed across the supported range (transformers 4.40 .. 5.x), old -> new: either name
# works on every version; the worker passes the one the installed release knows (checks.renamed_args).
TRAINING_ARG_RENAMES = {"evaluation_strategy": "eval_strategy", "warmup_ratio": "warmup_steps",
                        "no_cuda": "use_cpu", "per_gpu_train_batch_size": "per_device_train_batch_size",
                        "per_gpu_eval_batch_size": "per_device_eval_batch_size", "push_to_hub_token": "hub_token",
                        "push_to_hub_model_id": "hub_model_id", "include_inputs_for_metrics": "include_for_metrics"}
# Seq2SeqTrainingArguments' generation names -> keys of our `generation:` section (HF's Trainer has none of them).
GENERATION_TRAINING_ARGS = {"predict_with_generate": "predict_with_generate", "generation_num_beams": "num_beams",
                            "generation_max_length": "max_new_tokens"}



@dataclass
class DataSection:
    """`data:` (mirrors the data pipeline's `DataSpec`, minus `base_dir`, which comes from `--data-dir`).
    An entry of `train`/`eval` is a path or `{path, columns, keep_language, encoding}` (data/entries.py)."""

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
    # without a shared filesystem: own_node (each node keeps what its ranks wrote) | every_node (the nodes exchange
    # each checkpoint's files in the background after it is saved: losing a node loses no checkpoint; copies.py)
    checkpoint_copies: Literal["own_node", "every_node"] = "own_node"
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

