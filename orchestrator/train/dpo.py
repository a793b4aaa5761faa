"""Recipe: direct preference optimisation (`stage: dpo`) with trl's `DPOTrainer`.

Features: preference pairs `{"prompt","chosen","rejected"}` (strings or message lists); full, LoRA, QLoRA or freeze
on the policy; with LoRA/QLoRA the reference model is the same weights with the adapter switched off (no second
copy in memory); `dpo.beta` and `dpo.loss_type` go to `DPOConfig`, `data.max_length` caps prompt+answer.
Trade-offs: string pairs are wrapped as one user and one assistant message when the tokenizer has a chat template,
so the policy sees the chat format it was fine-tuned on; packing does not apply.
"""

from __future__ import annotations

from orchestrator.train.arguments import build_training_args
from orchestrator.train.callbacks import run_summary, say, throughput_callback
from orchestrator.train.checkpoints import completeness_callback, node_log, resolve_resume
from orchestrator.train.feed import feed_callback
from orchestrator.train.compat import tokenizer_kwarg
from orchestrator.train.config_schema import TrainConfig
from orchestrator.train.deepspeed import init_cpu_distributed
from orchestrator.train.model import load_model, load_tokenizer, parameter_counts


def as_chat(pair: dict) -> dict:
    """A string preference pair as message lists (prompt -> user, answers -> assistant); message lists pass."""
    if not isinstance(pair["prompt"], str):
        return pair
    return {"prompt": [{"role": "user", "content": pair["prompt"]}],
            "chosen": [{"role": "assistant", "content": pair["chosen"]}],
            "rejected": [{"role": "assistant", "content": pair["rejected"]}]}


def preference_dataset(entries: list, cfg: TrainConfig, chat: bool, take: int = -1):
    """A `datasets.Dataset` of preference pairs read by the data pipeline (`take` of them, seeded; -1: all)."""
    import random

    from datasets import Dataset

    from orchestrator.train.data.entries import read_preference

    pairs = read_preference(entries, cfg.data_dir, skip_bad=cfg.data.skip_bad)
    if 0 < take < len(pairs):
        chosen = sorted(random.Random(cfg.data.seed).sample(range(len(pairs)), take))
        pairs = [pairs[i] for i in chosen]
    return Dataset.from_list([as_chat(p) for p in pairs] if chat else pairs)


def run_dpo(cfg: TrainConfig) -> str:
    """Train the policy on preference pairs and return the output folder."""
    import torch
    from transformers import set_seed
    from trl import DPOTrainer

    # 1. Arguments first (process group, DeepSpeed config); DPO knobs come from the `dpo:` section.
    args = build_training_args(cfg, extra={"beta": cfg.dpo.beta, "loss_type": [cfg.dpo.loss_type],
                                           "max_length": cfg.data.max_length if cfg.data.max_length > 0 else None})
    if args.deepspeed and not torch.cuda.is_available():
        init_cpu_distributed()
    # 2. Data before the model, so a bad file fails before loading weights.
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    chat = bool(tokenizer.chat_template)
    train_ds = preference_dataset(cfg.data.train, cfg, chat, cfg.data.train_samples)
    eval_ds = preference_dataset(cfg.data.eval, cfg, chat, cfg.data.eval_samples) if cfg.data.eval else None
    say(args, f"preference pairs: {len(train_ds)} train, {len(eval_ds) if eval_ds else 0} eval")
    # 3. Policy model; the reference is implicit (adapter off) for LoRA, a frozen copy made by trl otherwise.
    set_seed(args.seed)  # the same adapter init on any world size, so runs compare
    model = load_model(cfg, use_bf16=args.bf16, gradient_checkpointing=args.gradient_checkpointing)
    trainable, total = parameter_counts(model)
    say(args, run_summary(trainable, total, args, len(train_ds)))
    trainer = DPOTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         callbacks=[completeness_callback(), feed_callback()],
                         **tokenizer_kwarg(DPOTrainer, tokenizer))
    trainer.callback_handler.callbacks.insert(0, throughput_callback())  # progress.json for `orch status`
    # 4. Resume decision, train, save.
    resume = resolve_resume(cfg.resume_from_checkpoint, args.output_dir, log=node_log(args))
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(args.output_dir)
    say(args, f"saved to {args.output_dir}")
    return args.output_dir
