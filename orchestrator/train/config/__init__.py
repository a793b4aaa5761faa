"""Training configs: `load_config` (a YAML file -> `TrainConfig`, checked before any model loads) and the schema,
the one face the rest of orch uses.

Inside: `schema` (the sections and the names each key accepts), `build` (typed building), `checks` (cross-field
and file checks), `notes` (keys without effect), `load` (`load_config`, which runs them), and `foreign/`: other
tools' config layouts, translated into our schema (`foreign.chatglm3`: ChatGLM3's finetune layout,
`foreign.swift`: ms-swift's names)."""

from orchestrator.train.config.load import load_config
from orchestrator.train.config.schema import (
    STAGES,
    FINETUNING,
    PROMPT_FINETUNING,
    DEEPSPEED_PRESETS,
    DEEPSPEED_ALIASES,
    LORA_TARGETS,
    LORA_DTYPES,
    TRAINING_ARG_RENAMES,
    GENERATION_TRAINING_ARGS,
    DataSection,
    LoraSection,
    SelfCognitionSection,
    QLoraSection,
    FreezeSection,
    PromptSection,
    DpoSection,
    GenerationSection,
    TrainConfig,
)

__all__ = [
    "load_config", "STAGES", "FINETUNING", "PROMPT_FINETUNING", "DEEPSPEED_PRESETS", "DEEPSPEED_ALIASES",
    "LORA_TARGETS", "LORA_DTYPES", "TRAINING_ARG_RENAMES", "GENERATION_TRAINING_ARGS", "DataSection", "LoraSection",
    "SelfCognitionSection", "QLoraSection", "FreezeSection", "PromptSection", "DpoSection", "GenerationSection",
    "TrainConfig",
]
