"""Recipe: supervised fine-tuning (`stage: sft`) and continued pretraining (`stage: pt`) with HF's Trainer.

Features: full / LoRA / QLoRA / freeze; DDP or DeepSpeed ZeRO-2/3 (gloo on CPU, NCCL on GPUs); packing;
generation-based evaluation (ROUGE/BLEU on generated answers, `generation:`, `data.test`);
checkpoints with a completeness marker and resume (`latest`, a step, a path) that continues the same data order
(the Trainer restores RNG state and skips the batches already seen); TensorBoard under `output_dir/runs/`.
Trade-offs: one process per device, no tensor/pipeline parallelism; tokenization happens up front on rank 0
(others wait on a file lock, not a collective), so the first step waits for it.
"""

from __future__ import annotations

from orchestrator.train.arguments import build_training_args
from orchestrator.train.callbacks import run_summary, sanity_table, say, throughput_callback
from orchestrator.train.compat import tokenizer_kwarg
from orchestrator.train.config import TrainConfig
from orchestrator.train.deepspeed import init_cpu_distributed, zero_stage
from orchestrator.train.model import load_model, load_tokenizer, parameter_counts
from orchestrator.train.resuming import checkpoint_callbacks, resume_point


def data_spec(cfg: TrainConfig):
    """The data pipeline's `DataSpec` for this config (self-cognition samples added to the training set after
    `train_samples` is drawn from the user's data, as ms-swift does)."""
    from dataclasses import asdict
    from pathlib import Path

    from orchestrator.train.data.cache import default_cache_dir, private_inside
    from orchestrator.train.data.spec import DataSpec
    from orchestrator.train.self_cognition import self_cognition_file

    spec = DataSpec(**asdict(cfg.data), base_dir=cfg.data_dir)
    sc = cfg.self_cognition
    if sc.samples:
        folder = Path(spec.cache_dir) if spec.cache_dir else default_cache_dir()
        with private_inside(folder):
            spec.added = [str(self_cognition_file(sc.name, sc.author, sc.samples, folder, spec.seed))]
    return spec


def save_beside_weights(cfg: TrainConfig, output_dir: str, tokenizer) -> None:
    """The chat format training used (orch chat/serve lay prompts out the same way), and the base's tokenizer
    files where the saved copy does not load back (ChatGLM3's)."""
    from orchestrator.train.data.prompting import write_record
    from orchestrator.train.tokenizer_files import restore_if_unloadable

    write_record(output_dir, cfg.data.template, cfg.data.system, tokenizer)
    restore_if_unloadable(output_dir, cfg.model, cfg.trust_remote_code)


def run_sft(cfg: TrainConfig) -> str:
    """Train as configured and return the output folder (weights or adapter, tokenizer, checkpoints, runs/)."""
    import torch
    from transformers import Trainer, set_seed

    from orchestrator.train.data.collate import make_collator
    from orchestrator.train.data.dataset import build_sft_datasets, build_test_dataset
    from orchestrator.train.generation_eval import GenerationEval
    from orchestrator.train.packing_check import check_packing

    # 1. Arguments first: they start the process group and register DeepSpeed's config for from_pretrained.
    args = build_training_args(cfg)
    # 2. ZeRO-3 on CPU: DeepSpeed's gloo group must exist before from_pretrained partitions the weights.
    if args.deepspeed and not torch.cuda.is_available():
        init_cpu_distributed()
    # 2b. Which checkpoint to resume (every rank agrees), and the arguments for this world size: the same global
    #     batch, DeepSpeed's universal checkpoint when the world size changed (`reshape`).
    resume, args = resume_point(cfg, args, lambda extra: build_training_args(cfg, extra))
    # 3. Data before the model: a bad file fails fast and cheaply. The first process to take the cache's file
    #    lock tokenizes, the others wait on the lock (never on a collective, which could time out) and read it.
    tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
    train_ds, eval_ds, report = build_sft_datasets(data_spec(cfg), tokenizer, stage=cfg.stage)
    test_ds = build_test_dataset(data_spec(cfg), tokenizer, stage=cfg.stage) if cfg.data.test else None
    generation = GenerationEval.create(cfg.generation, tokenizer, eval_ds, test_ds, args)  # None: nothing to generate
    say(args, report.summary())
    say(args, sanity_table(list(train_ds[0]["input_ids"]), list(train_ds[0]["labels"]), tokenizer))
    # 4. Model in its fine-tuning mode.
    set_seed(args.seed)  # the same adapter init on any world size, so runs compare
    model = load_model(cfg, use_bf16=args.bf16, gradient_checkpointing=args.gradient_checkpointing)
    collate = make_collator(tokenizer, cfg.data.packing)
    zero3 = zero_stage(args.deepspeed if isinstance(args.deepspeed, dict) else None) == 3
    if cfg.data.packing:  # "no cross-sample attention" must hold for this model's own attention code
        check_packing(model, collate, len(tokenizer), cfg.model, zero3=zero3)
    trainable, total = parameter_counts(model)
    say(args, run_summary(trainable, total, args, len(train_ds)))
    if zero3:
        say(args, "ZeRO-3: parameters are partitioned across ranks (counts above are full sizes)")
    # 5. Trainer; our throughput callback goes first so tokens/s reaches the console and TensorBoard.
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                      data_collator=collate, **tokenizer_kwarg(Trainer, tokenizer),
                      callbacks=checkpoint_callbacks(cfg))
    trainer.callback_handler.callbacks.insert(0, throughput_callback())
    if generation:  # first too: the ROUGE/BLEU scores join the eval entry before it is printed
        trainer.callback_handler.callbacks.insert(0, generation.callback())
    # 6. Train (resuming as decided in 2b), save the final weights (LoRA: the adapter) and the tokenizer.
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(args.output_dir)
    if args.should_save:  # the chat format `orch chat` / `orch serve` lay prompts out in; a tokenizer that loads
        save_beside_weights(cfg, args.output_dir, tokenizer)
    say(args, f"saved to {args.output_dir}")
    if generation:
        generation.predict_test(trainer)  # data.test: predictions_test.jsonl and test_* metrics
    return args.output_dir
