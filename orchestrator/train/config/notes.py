"""Keys a training config carries that have no effect: each becomes one warning line naming the key and why.

The worker prints them once, on rank 0, before training (`run.print_warnings`). A key is never dropped silently:
it either takes effect, or is named here, or is refused with a `ConfigError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.train.config.schema import TrainConfig

SAMPLING_KEYS = ("temperature", "top_p", "top_k")
DPO_UNUSED_DATA_KEYS = ("eval_ratio", "truncation_strategy", "packing", "cache_dir")


@dataclass
class Provenance:
    """What reading a config learned besides the values: warnings so far, and the key a user actually wrote for a
    key of ours (`generation.max_new_tokens` <- `training_args.generation_config.max_new_tokens`)."""

    warnings: list[str] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)

    def name(self, key: str) -> str:
        """The user's name for our dotted `key`."""
        return self.origin.get(key, key)

    def warn(self, key: str, why: str) -> None:
        """Record `<key>: <why>` once."""
        line = f"{key}: {why}"
        if line not in self.warnings:
            self.warnings.append(line)


def unused_keys(raw: dict[str, Any], cfg: TrainConfig, prov: Provenance) -> None:
    """Warn (into `prov`) about every key of `raw` (the config after translation) that `cfg` will not use."""
    _unused_sections(raw, cfg, prov)
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    if cfg.data.eval and data.get("eval_ratio"):
        prov.warn("data.eval_ratio", "ignored (data.eval is set and is the eval set)")
    if cfg.stage == "dpo":
        for key in DPO_UNUSED_DATA_KEYS:
            if key in data:
                prov.warn(f"data.{key}", "ignored for stage: dpo (trl tokenizes the preference pairs itself)")
    _unused_generation(cfg, prov)
    if cfg.checkpoint_copies == "every_node" and os.environ.get("ORCH_SHARED_FS") != "0":
        prov.warn("checkpoint_copies", "no effect here (every node sees the same output folder: a shared filesystem, "
                                       "or one machine)")


def _unused_sections(raw: dict[str, Any], cfg: TrainConfig, prov: Provenance) -> None:
    """Sections that belong to another fine-tuning mode or stage."""
    owners = {"lora": ("lora", "qlora"), "qlora": ("qlora",), "freeze": ("freeze",), "prompt": ("prefix", "ptuning")}
    for section, modes in owners.items():
        if raw.get(section) and cfg.finetuning not in modes:
            prov.warn(section, f"ignored (finetuning is {cfg.finetuning}; this section is for "
                               f"{' or '.join(modes)})")
    if raw.get("dpo") and cfg.stage != "dpo":
        prov.warn("dpo", f"ignored (stage is {cfg.stage})")
    if cfg.self_cognition.samples and cfg.stage == "dpo":
        prov.warn(prov.name("self_cognition.samples"), "ignored for stage: dpo (identity samples are Q/A, not pairs)")


def _unused_generation(cfg: TrainConfig, prov: Provenance) -> None:
    """Decoding settings when nothing is generated; sampling settings under greedy/beam decoding."""
    gen = cfg.generation
    written = [k.split(".", 1)[1] for k in prov.origin if k.startswith("generation.")]

    if gen.predict_with_generate and not evaluates(cfg.training_args):
        prov.warn(prov.name("generation.predict_with_generate"),
                  "no effect without evaluations (set training_args.eval_strategy: steps or epoch)")
    if not gen.predict_with_generate and not cfg.data.test:
        for key in written:
            if key != "predict_with_generate":
                prov.warn(prov.name(f"generation.{key}"),
                          "ignored (nothing is generated: predict_with_generate is off and there is no test set)")
        return
    if not gen.do_sample:
        for key in SAMPLING_KEYS:
            if key in written:
                prov.warn(prov.name(f"generation.{key}"), "ignored (do_sample is false: greedy or beam decoding)")
    if gen.max_samples is not None and "max_samples" in written and not gen.predict_with_generate:
        prov.warn(prov.name("generation.max_samples"),
                  "ignored (it caps the eval set; the test set is generated whole)")


def evaluates(args: dict) -> bool:
    """Whether `training_args` asks for evaluations (under either name of the eval strategy)."""
    value = args.get("eval_strategy", args.get("evaluation_strategy", "no"))
    return str(value) not in ("no", "IntervalStrategy.NO")
