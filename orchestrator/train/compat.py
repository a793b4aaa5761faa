"""Where transformers 4.x and 5.x (and old/new peft, trl) differ, in one place: small functions the recipes call.

The worker runs in the node's own env (see requirements.py for the ranges). Each function adapts one call and is
keyed on what the installed library accepts (a signature or field), not on a hard-coded list of releases, except
where only the version tells.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from importlib import metadata

from orchestrator.train.requirements import parse_version


def version(package: str) -> tuple[int, ...]:
    """The installed version of `package` as numbers (`4.44.0` -> (4, 44, 0); `2.13.0+cpu` -> (2, 13, 0))."""
    return parse_version(metadata.version(package))


def from_pretrained_kwargs(kwargs: dict) -> dict:
    """`from_pretrained` keywords: `dtype=` is spelt `torch_dtype=` before transformers 4.56."""
    if "dtype" in kwargs and version("transformers") < (4, 56):
        kwargs = {("torch_dtype" if k == "dtype" else k): v for k, v in kwargs.items()}
    return kwargs


def tokenizer_kwarg(trainer_cls, tokenizer) -> dict:
    """The Trainer keyword for the tokenizer: `processing_class=` (transformers >= 4.46, trl >= 0.12), else
    `tokenizer=`."""
    return {"processing_class" if _accepts(trainer_cls, "processing_class") else "tokenizer": tokenizer}


def training_args_kwargs(cls, kwargs: dict) -> dict:
    """`TrainingArguments`/`DPOConfig` keywords for the installed release: `include_num_input_tokens_seen` is a
    bool before transformers 5 ("non_padding"/"all" -> True, "no" -> False)."""
    value = kwargs.get("include_num_input_tokens_seen")
    field = cls.__dataclass_fields__.get("include_num_input_tokens_seen")
    if isinstance(value, str) and field is not None and "str" not in str(field.type):
        kwargs = {**kwargs, "include_num_input_tokens_seen": value != "no"}
    return kwargs


@lru_cache(maxsize=None)
def _accepts(cls, name: str) -> bool:
    """Whether `cls(...)` takes keyword `name`."""
    return name in inspect.signature(cls.__init__).parameters


@lru_cache(maxsize=1)
def detects_packed_rows() -> bool:
    """Whether transformers builds the block-diagonal mask of packed rows from restarting `position_ids` itself
    (`masking_utils.find_packed_sequence_indices`, transformers >= 4.53)."""
    try:
        from transformers.masking_utils import find_packed_sequence_indices  # noqa: F401
    except ImportError:
        return False
    return True


def packed_attention_mask(position_ids):
    """For older transformers: a 4-D mask (batch, 1, len, len) in which each token sees only the earlier tokens of
    its own sample (samples start where `position_ids` restart at 0). transformers >= 4.41 takes it additive
    (0 = attend, float min = masked), older ones as 1 = attend, 0 = masked. Trade-off: len x len floats per row,
    what transformers builds internally anyway."""
    import torch

    sample = (position_ids == 0).cumsum(-1)
    length = position_ids.shape[-1]
    allowed = (sample[:, :, None] == sample[:, None, :]) & torch.ones(length, length, dtype=torch.bool).tril()
    if version("transformers") < (4, 41):
        return allowed.to(torch.float32)[:, None]
    mask = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill_(~allowed, torch.finfo(torch.float32).min)
    return mask[:, None]


@lru_cache(maxsize=1)
def allow_checkpoint_loads() -> None:
    """Let torch (weights_only loads by default since 2.6) read what older transformers resume from:
    - the numpy RNG state in `rng_state*.pth` (transformers < 4.50 loads it without allowlisting numpy; the
      allowlist is the one transformers itself uses since);
    - storages mapped to `cpu:0`: transformers 4.x maps a multi-process CPU run's optimizer to `args.device`."""
    import numpy as np
    import torch

    torch.serialization.register_package(1000, lambda obj: None, _cpu_with_index)  # a priority torch leaves free
    if hasattr(torch.serialization, "add_safe_globals"):  # torch < 2.4 loads the RNG state unrestricted anyway
        core = np._core if hasattr(np, "_core") else np.core
        torch.serialization.add_safe_globals([core.multiarray._reconstruct, np.ndarray, np.dtype,
                                              type(np.dtype(np.uint32))])


def _cpu_with_index(storage, location: str):
    """torch.load location hook: `cpu:N` is the CPU (None passes other locations on)."""
    return storage if location.startswith("cpu:") else None


def prefix_as_cache(peft_model):
    """peft before 0.13 hands prefix keys/values to the model as a tuple of tensors; transformers' own models with
    Cache classes (4.36-4.46) accept that only outside training. Wrap them in a `DynamicCache` there; models with
    their own code (ChatGLM3's reads the tuple itself) are left alone."""
    if version("peft") >= (0, 13) or not getattr(peft_model.get_base_model(), "_supports_cache_class", False):
        return peft_model
    from transformers import DynamicCache

    original = peft_model.get_prompt

    def get_prompt(batch_size: int, task_ids=None):
        value = original(batch_size, task_ids)
        return DynamicCache.from_legacy_cache(value) if isinstance(value, tuple) else value

    peft_model.get_prompt = get_prompt
    return peft_model
