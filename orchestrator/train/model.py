"""Load the tokenizer and the model for one fine-tuning mode: full, LoRA, QLoRA or freeze.

- full: every weight trains, loaded in float32 (mixed precision, if any, comes from the Trainer or DeepSpeed).
- lora: the base is frozen (bf16 when training in bf16 on a GPU, else float32) and peft adds adapters to the named
  modules or `all-linear`; adapters stay float32.
- qlora: the base is quantized by bitsandbytes (4-bit NF4 by default; also runs on CPU) and prepared for k-bit
  training, then LoRA goes on top (under ZeRO-3 DeepSpeed places the weights: no device map). Trade-off: slower
  steps, a quarter of the base memory.
- freeze: only the top fraction of decoder layers plus parameters whose names contain an `extra_trainable` entry.
- prefix (P-Tuning v2): a model whose config has `pre_seq_len` (ChatGLM3) trains its OWN prefix encoder, as
  ChatGLM3's finetune_hf.py does (`pre_seq_len = num_virtual_tokens`, everything else frozen, saved as a whole model
  folder whose config.json carries pre_seq_len); other models get peft's prefix tuning.
"""

from __future__ import annotations

import math

from orchestrator.errors import ConfigError
from orchestrator.train.compat import from_pretrained_kwargs, prefix_as_cache
from orchestrator.train.config import PROMPT_FINETUNING, TrainConfig


LORA_DTYPES_TORCH = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}  # lora.dtype; auto: peft's float32


def load_tokenizer(path: str, trust_remote_code: bool = False):
    """The model's tokenizer, with an EOS token (the model's end-of-document token when it has none) and a pad
    token (the EOS token when it has none). Its padding side is left as the tokenizer has it: orch's collator pads
    rows itself, and ChatGLM3's tokenizer refuses any side but left.

    `trust_remote_code` is always an explicit bool: left unset, transformers would ask on stdin."""
    from transformers import AutoTokenizer

    from orchestrator.train.remote_code import warn_known_break
    from orchestrator.train.special_tokens import fill_eos_and_pad

    warn_known_break(path)  # first thing: the model's own code may be known not to run on this transformers
    return fill_eos_and_pad(AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code), path)


def load_model(cfg: TrainConfig, use_bf16: bool, gradient_checkpointing: bool = False):
    """Load the base model and apply the fine-tuning mode of `cfg`; returns the model ready for the Trainer."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict = {"dtype": torch.float32}
    if cfg.finetuning == "lora" and use_bf16 and torch.cuda.is_available():
        kwargs["dtype"] = torch.bfloat16
    if cfg.finetuning == "qlora":
        kwargs.update(quantization_kwargs(cfg))
    if cfg.finetuning == "prefix":
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
        if hasattr(config, "pre_seq_len"):  # the model's own prefix encoder (ChatGLM3), not peft's
            return load_with_own_prefix_encoder(cfg, config, kwargs)
    model = AutoModelForCausalLM.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code,
                                                 **from_pretrained_kwargs(kwargs))
    model.config.use_cache = False  # the KV cache only costs memory during training
    if cfg.finetuning == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    if cfg.finetuning in ("lora", "qlora"):
        return add_lora(model, cfg)
    if cfg.finetuning in PROMPT_FINETUNING:
        return add_prompt_adapter(model, cfg)
    if cfg.finetuning == "freeze":
        freeze_lower_layers(model, cfg.freeze.trainable_fraction, cfg.freeze.extra_trainable)
    return model


def load_with_own_prefix_encoder(cfg: TrainConfig, config, kwargs: dict):
    """The model with `pre_seq_len = prompt.num_virtual_tokens` (and `prefix_projection`) set in its `config`: only
    its prefix encoder trains. A prefix encoder the checkpoint does not hold is initialised here (ChatGLM3's
    `_init_weights` leaves new weights as allocated)."""
    from transformers import AutoModelForCausalLM

    config.pre_seq_len = cfg.prompt.num_virtual_tokens
    config.prefix_projection = cfg.prompt.prefix_projection
    config.use_cache = False
    model, info = AutoModelForCausalLM.from_pretrained(
        cfg.model, config=config, output_loading_info=True, trust_remote_code=cfg.trust_remote_code,
        **from_pretrained_kwargs(kwargs))
    encoders = [(name, module) for name, module in model.named_modules() if name.endswith("prefix_encoder")]
    if not encoders:
        raise ConfigError(f"{cfg.source}: finetuning: prefix: {cfg.model} has pre_seq_len in its config but its "
                          "model code built no prefix_encoder")
    for param in model.parameters():
        param.requires_grad_(False)
    for name, encoder in encoders:
        if any(key.startswith(name + ".") or f".{name}." in f".{key}" for key in info.get("missing_keys", [])):
            for module in encoder.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        for param in encoder.parameters():
            param.requires_grad_(True)
    return model


def quantization_kwargs(cfg: TrainConfig) -> dict:
    """`from_pretrained` arguments that quantize the base with bitsandbytes (CPU keeps float32 compute). Under
    ZeRO-3 (which places and partitions the weights itself: no `device_map`) the 4-bit weights are stored in the
    compute dtype, as DeepSpeed's flat partitions need one dtype."""
    import torch
    from transformers import BitsAndBytesConfig
    from transformers.integrations import is_deepspeed_zero3_enabled

    q = cfg.qlora
    compute = getattr(torch, q.compute_dtype)
    if not torch.cuda.is_available():
        compute = torch.float32  # bf16 4-bit matmuls on CPU are slower and less exact; float32 is what works here
    zero3 = is_deepspeed_zero3_enabled()
    if q.bits == 8:
        bnb = BitsAndBytesConfig(load_in_8bit=True)
    else:
        storage = {"bnb_4bit_quant_storage": compute} if zero3 else {}
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q.quant_type,
                                 bnb_4bit_compute_dtype=compute, bnb_4bit_use_double_quant=q.double_quant, **storage)
    if zero3:
        return {"quantization_config": bnb}
    device = "cpu" if not torch.cuda.is_available() else torch.cuda.current_device()
    return {"quantization_config": bnb, "device_map": {"": device}}


def add_lora(model, cfg: TrainConfig):
    """Wrap `model` with LoRA adapters as configured in `cfg.lora`."""
    from peft import LoraConfig, get_peft_model

    lc = cfg.lora
    peft_cfg = LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                          target_modules=_targets(lc.target_modules, model), modules_to_save=lc.modules_to_save,
                          task_type="CAUSAL_LM")
    try:
        model = get_peft_model(model, peft_cfg)
    except ValueError as exc:  # e.g. a target module name that is not in the model, or no default for its type
        raise ConfigError(f"{cfg.source}: lora.target_modules: {exc}") from None
    if lc.dtype in LORA_DTYPES_TORCH:
        import torch

        dtype = getattr(torch, LORA_DTYPES_TORCH[lc.dtype])
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.data = param.data.to(dtype)
    return model


def add_prompt_adapter(model, cfg: TrainConfig):
    """Wrap `model` with virtual tokens as configured in `cfg.prompt`: P-Tuning v2 (`prefix`, learned keys and values
    at every layer, what ChatGLM3's ptuning config trains) or P-Tuning (`ptuning`, learned input embeddings)."""
    from peft import PrefixTuningConfig, PromptEncoderConfig, get_peft_model

    p = cfg.prompt
    width = {"encoder_hidden_size": p.encoder_hidden_size} if p.encoder_hidden_size else {}
    if cfg.finetuning == "prefix":
        peft_cfg = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=p.num_virtual_tokens,
                                      prefix_projection=p.prefix_projection, **width)
    else:
        peft_cfg = PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=p.num_virtual_tokens, **width)
    return prefix_as_cache(get_peft_model(model, peft_cfg))


def decoder_layers(model) -> list:
    """The model's stack of decoder layers: its longest `nn.ModuleList`."""
    import torch

    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    return list(max(lists, key=len)) if lists else []


def freeze_lower_layers(model, trainable_fraction: float, extra: list[str]) -> None:
    """Freeze everything except the top `trainable_fraction` of decoder layers and parameters matching `extra`."""
    layers = decoder_layers(model)
    keep = max(1, math.ceil(len(layers) * trainable_fraction))
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in layers[len(layers) - keep:]:
        for p in layer.parameters():
            p.requires_grad_(True)
    for name in extra:
        hits = [p for n, p in model.named_parameters() if name in n]
        if not hits:
            raise ConfigError(f"freeze.extra_trainable: no parameter name contains {name!r}")
        for p in hits:
            p.requires_grad_(True)


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit weights count as stored."""
    sizes = [(getattr(p, "ds_numel", p.numel()), p.requires_grad) for p in model.parameters()]  # ZeRO-3: ds_numel
    trainable = sum(n for n, grad in sizes if grad)
    total = sum(n for n, _ in sizes)
    return trainable, total


def _targets(value: str | list[str] | None, model=None) -> str | list[str] | None:
    """peft reads a plain string as a regex over full module paths: keep `all-linear` and None (peft's default for
    the model type), wrap a single name. None on a model type peft has no default for is `all-linear`."""
    if value is None and model is not None and peft_default_targets(model) is None:
        return "all-linear"
    return value if value in ("all-linear", None) or isinstance(value, list) else [value]


def peft_default_targets(model) -> list[str] | None:
    """peft's own LoRA target modules for the model's `model_type` (ChatGLM3: `query_key_value`), or None."""
    try:
        from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as defaults
    except ImportError:
        return None
    found = defaults.get(getattr(model.config, "model_type", None))
    return list(found) if found else None
