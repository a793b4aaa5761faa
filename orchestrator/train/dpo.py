"""Recipe: direct preference optimisation (`stage: dpo`) with trl's `DPOTrainer`.

Features: preference pairs `{"prompt","chosen","rejected"}` (strings or message lists); full, LoRA, QLoRA or freeze
on the policy; with LoRA/QLoRA the reference model is the same weights with the adapter switched off (no second
copy in memory); `dpo.beta` and `dpo.loss_type` go to `DPOConfig`, `data.max_length` caps prompt+answer.
Pairs are laid out in the chat format SFT used (`data.template`, `data.system`; default `auto`): the tokenizer's
own chat template (trl applies it to message lists; string pairs become one user and one assistant message), else
the built-in or user-defined format as text (prompt up to the answer, answer plus the format's end of turn).
Resume (also on another world size) as in SFT (`reshape`). Trade-off: packing does not apply.
"""

from __future__ import annotations

from orchestrator.errors import DataError
from orchestrator.train.arguments import build_training_args
from orchestrator.train.callbacks import run_summary, say, throughput_callback
from orchestrator.train.compat import tokenizer_kwarg
from orchestrator.train.config import TrainConfig
from orchestrator.train.deepspeed import init_cpu_distributed
from orchestrator.train.model import load_model, load_tokenizer, parameter_counts
from orchestrator.train.resuming import checkpoint_callbacks, resume_point


def as_chat(pair: dict) -> dict:
    """A string preference pair as message lists (prompt -> user, answers -> assistant); message lists pass."""
    if not isinstance(pair["prompt"], str):
        return pair
    return {"prompt": [{"role": "user", "content": pair["prompt"]}],
            "chosen": [{"role": "assistant", "content": pair["chosen"]}],
            "rejected": [{"role": "assistant", "content": pair["rejected"]}]}


def as_text(pair: dict, template) -> dict:
    """A preference pair as text in `template`'s chat format: the prompt up to the answer, each answer with the
    format's end of turn (what SFT trained the model to end an answer with)."""
    from orchestrator.train.data.prompting import prompt_text

    chat = as_chat(pair)
    prompt, end = prompt_text(chat["prompt"], template)
    answer = lambda messages: "".join(m["content"] for m in messages)  # noqa: E731
    return {"prompt": prompt, "chosen": answer(chat["chosen"]) + end, "rejected": answer(chat["rejected"]) + end}


def preference_dataset(entries: list, cfg: TrainConfig, template, take: int = -1):
    """A `datasets.Dataset` of preference pairs read by the data pipeline (`take` of them, seeded; -1: all), laid
    out in `template` (`templates.Template`; the tokenizer's own: message lists for trl)."""
    import random

    from datasets import Dataset

    from orchestrator.train.data.entries import read_preference

    pairs = read_preference(entries, cfg.data_dir, skip_bad=cfg.data.skip_bad)
    if 0 < take < len(pairs):
        chosen = sorted(random.Random(cfg.data.seed).sample(range(len(pairs)), take))
        pairs = [pairs[i] for i in chosen]
    if template.name == "tokenizer":
        return Dataset.from_list([as_chat(p) for p in pairs])
    try:
        return Dataset.from_list([as_text(p, template) for p in pairs])
    except ValueError as exc:
        raise DataError(f"data.template {template.name}: a preference pair cannot be laid out: {exc}") from None


def pad_in_vocab(tokenizer):
    """trl refuses a pad token that `get_vocab()` lacks; Qwen v1's `get_vocab()` holds only its BPE ranks (`bytes`
    keys), not its special tokens, so its end-of-document pad token is added to what this instance reports."""
    if tokenizer.pad_token is None or tokenizer.pad_token in tokenizer.get_vocab():
        return tokenizer
    original, pad = tokenizer.get_vocab, {tokenizer.pad_token: tokenizer.pad_token_id}
    tokenizer.get_vocab = lambda: {**original(), **pad}
    return tokenizer


def run_dpo(cfg: TrainConfig) -> str:
    """Train the policy on preference pairs and return the output folder."""
    import torch
    from transformers import set_seed
    from trl import DPOTrainer

    from orchestrator.train.data.prompting import write_record
    from orchestrator.train.data.templates import resolve_template, with_system

    # 1. Arguments first (process group, DeepSpeed config); DPO knobs come from the `dpo:` section.
    knobs = {"beta": cfg.dpo.beta, "loss_type": [cfg.dpo.loss_type],
             "max_length": cfg.data.max_length if cfg.data.max_length > 0 else None}
    args = build_training_args(cfg, extra=knobs)
    if args.deepspeed and not torch.cuda.is_available():
        init_cpu_distributed()
    # 1b. Which checkpoint to resume (every rank agrees), and the arguments for this world size (as in SFT).
    resume, args = resume_point(cfg, args, lambda extra: build_training_args(cfg, {**knobs, **extra}))
    # 2. Data before the model, so a bad file fails before loading weights.
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    template = with_system(resolve_template(cfg.data.template, tokenizer), cfg.data.system)
    train_ds = preference_dataset(cfg.data.train, cfg, template, cfg.data.train_samples)
    eval_ds = preference_dataset(cfg.data.eval, cfg, template, cfg.data.eval_samples) if cfg.data.eval else None
    say(args, f"preference pairs: {len(train_ds)} train, {len(eval_ds) if eval_ds else 0} eval")
    # 3. Policy model; the reference is implicit (adapter off) for LoRA, a frozen copy made by trl otherwise.
    set_seed(args.seed)  # the same adapter init on any world size, so runs compare
    model = load_model(cfg, use_bf16=args.bf16, gradient_checkpointing=args.gradient_checkpointing)
    trainable, total = parameter_counts(model)
    say(args, run_summary(trainable, total, args, len(train_ds)))
    trainer = DPOTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         callbacks=checkpoint_callbacks(cfg),
                         **tokenizer_kwarg(DPOTrainer, pad_in_vocab(tokenizer)))
    trainer.callback_handler.callbacks.insert(0, throughput_callback())  # progress.json for `orch status`
    # 4. Train (resuming as decided in 1b), save.
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():  # the chat format `orch chat` / `orch serve` lay prompts out in
        write_record(args.output_dir, cfg.data.template, cfg.data.system, tokenizer)
    say(args, f"saved to {args.output_dir}")
    return args.output_dir
