"""Generation-based evaluation, as ChatGLM3's finetune_hf.py does it: generate an answer for each eval prompt at
every evaluation and score it (ROUGE-1/2/L, BLEU-4; see `metrics`), and after training generate on the test set
and write `<output_dir>/predictions_test.jsonl`.

- Prompts come from per-sample rows (a packed eval set is unpacked): each run of trained tokens (an assistant turn)
  gives one prompt, everything before it, and one reference, the run minus its end-of-turn/EOS token.
- Generation stops at EOS or the template's end-of-turn token; settings come from `generation:` (greedy by default);
  the KV cache is on; the model is put in eval mode and back.
- Several ranks: prompts are sharded round-robin, each rank scores its answers, and `all_gather_object` brings every
  row to every rank, so all ranks log the same numbers and leave together. Under DeepSpeed ZeRO-3 every rank runs the
  same number of `generate` calls (padding with a dummy batch) with `synced_gpus=True`, as the weights are sharded.
- The scores join the eval log entry (`eval_rouge-1`, `eval_rouge-2`, `eval_rouge-l`, `eval_bleu-4`) before the
  console and TensorBoard see it, so `metric_for_best_model: rouge-l` works too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from orchestrator.train import metrics
from orchestrator.train.callbacks import say
from orchestrator.train.config import GenerationSection

IGNORE_INDEX = -100


@dataclass
class Prompt:
    """One generation task: the prompt tokens and the reference answer tokens."""

    ids: list[int]
    reference: list[int]


def trained_runs(labels: list[int]) -> list[tuple[int, int]]:
    """[start, end) of every run of consecutive trained (label != -100) positions."""
    runs, start = [], None
    for i, label in enumerate(list(labels) + [IGNORE_INDEX]):
        if label != IGNORE_INDEX and start is None:
            start = i
        elif label == IGNORE_INDEX and start is not None:
            runs.append((start, i))
            start = None
    return runs


def prompts_of(dataset, limit: int | None = None) -> list[Prompt]:
    """A prompt per trained run of every per-sample item of `dataset`, in order (at most `limit`); runs at position 0
    (plain text, nothing to prompt with) are skipped."""
    found: list[Prompt] = []
    for i in range(len(dataset)):
        item = dataset[i]
        ids = list(item["input_ids"])
        for start, end in trained_runs(item["labels"]):
            if start > 0:
                found.append(Prompt(ids[:start], ids[start:end]))
            if limit is not None and len(found) >= limit:
                return found
    return found


def stop_ids(tokenizer, prompts: list[Prompt]) -> list[int]:
    """EOS plus every special token that ends a reference (a template's end-of-turn, e.g. `<|im_end|>`)."""
    special = set(tokenizer.all_special_ids)
    found = {p.reference[-1] for p in prompts if p.reference and p.reference[-1] in special}
    if tokenizer.eos_token_id is not None:
        found.add(tokenizer.eos_token_id)
    return sorted(found)


def _answer(tokens: list[int], stops: list[int], tokenizer) -> str:
    """Text of `tokens` up to the first stop token, special tokens left out."""
    cut = next((i for i, t in enumerate(tokens) if t in stops), len(tokens))
    return tokenizer.decode(tokens[:cut], skip_special_tokens=True).strip()


def _distributed() -> tuple[int, int]:
    """(rank, world size); (0, 1) without a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _generate_kwargs(gen: GenerationSection, stops: list[int], pad_id: int, synced: bool) -> dict:
    """Keyword arguments for `generate` (transformers 4.40+ and 5.x); sampling knobs only when sampling."""
    kwargs = {"max_new_tokens": gen.max_new_tokens, "num_beams": gen.num_beams, "do_sample": gen.do_sample,
              "repetition_penalty": gen.repetition_penalty, "eos_token_id": stops, "pad_token_id": pad_id,
              "use_cache": True}
    if gen.do_sample:
        kwargs.update(temperature=gen.temperature, top_p=gen.top_p, top_k=gen.top_k)
    if synced:
        kwargs["synced_gpus"] = True
    return kwargs


def _generate(model, batches: list[list[Prompt]], kwargs: dict, pad_id: int, device) -> list[list[int]]:
    """New tokens for every prompt of every batch (left-padded prompts, one `generate` call per batch)."""
    import torch

    out: list[list[int]] = []
    for batch in batches:
        width = max(len(p.ids) for p in batch)
        ids = torch.tensor([[pad_id] * (width - len(p.ids)) + p.ids for p in batch], device=device)
        mask = torch.tensor([[0] * (width - len(p.ids)) + [1] * len(p.ids) for p in batch], device=device)
        with torch.no_grad():
            generated = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        out += generated[:, width:].tolist()
    return out


def _zero3() -> bool:
    """Whether DeepSpeed ZeRO-3 shards the weights (then every rank must take part in every forward pass)."""
    try:
        from transformers.integrations import is_deepspeed_zero3_enabled
    except ImportError:
        return False
    return bool(is_deepspeed_zero3_enabled())


def run_generation(model, tokenizer, prompts: list[Prompt], gen: GenerationSection, batch_size: int,
                   device) -> tuple[dict[str, float], list[dict]]:
    """Generate for `prompts` sharded over the ranks and score the answers; on every rank returns (mean metrics,
    rows {prompt, reference, prediction} in prompt order)."""
    rank, world = _distributed()
    stops = stop_ids(tokenizer, prompts)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stops or [0])[0]
    synced = world > 1 and _zero3()
    mine = sorted(range(rank, len(prompts), world), key=lambda i: len(prompts[i].ids))
    batches = [[prompts[i] for i in mine[k:k + batch_size]] for k in range(0, len(mine), batch_size)]
    rounds = math.ceil(math.ceil(len(prompts) / world) / batch_size)
    if synced:  # ZeRO-3: the same number of generate calls on every rank; the dummy answers are dropped
        batches += [[prompts[0]]] * (rounds - len(batches))
    was_training = model.training
    model.eval()
    try:
        answers = _generate(model, batches, _generate_kwargs(gen, stops, pad_id, synced), pad_id, device)
    finally:
        model.train(was_training)
    rows = []
    for i, tokens in zip(mine, answers):
        reference = _answer(prompts[i].reference, stops, tokenizer)
        prediction = _answer(tokens, stops, tokenizer)
        rows.append({"index": i, "prompt": tokenizer.decode(prompts[i].ids), "reference": reference,
                     "prediction": prediction, "scores": metrics.score(prediction, reference)})
    rows = sorted(_gather(rows, world), key=lambda row: row["index"])
    return metrics.average([row["scores"] for row in rows]), rows


def _gather(rows: list[dict], world: int) -> list[dict]:
    """Every rank's rows on every rank."""
    if world == 1:
        return rows
    import torch.distributed as dist

    everyone: list[list[dict]] = [[] for _ in range(world)]
    dist.all_gather_object(everyone, rows)
    return [row for part in everyone for row in part]


class GenerationEval:
    """Generation-based evaluation of one run: eval prompts (when `predict_with_generate`) and test prompts."""

    def __init__(self, gen: GenerationSection, tokenizer, eval_prompts: list[Prompt], test_prompts: list[Prompt]):
        self.gen, self.tokenizer = gen, tokenizer
        self.eval_prompts, self.test_prompts = eval_prompts, test_prompts

    @classmethod
    def create(cls, gen: GenerationSection, tokenizer, eval_ds, test_ds, args) -> GenerationEval | None:
        """From the eval dataset (packed or not) and the test dataset; None when nothing is to be generated."""
        from orchestrator.train.data.dataset import per_sample

        use_eval = gen.predict_with_generate and eval_ds is not None
        eval_prompts = prompts_of(per_sample(eval_ds), gen.max_samples) if use_eval else []
        test_prompts = prompts_of(test_ds) if test_ds is not None else []
        if use_eval and not eval_prompts:
            say(args, "warning: generation.predict_with_generate: no eval sample has a prompt before its answer")
        if not eval_prompts and not test_prompts:
            return None
        say(args, f"generation eval: {len(eval_prompts)} eval prompts at each evaluation, {len(test_prompts)} test "
                  f"prompts after training; {metrics.segmenter()}")
        return cls(gen, tokenizer, eval_prompts, test_prompts)

    def run(self, model, prompts: list[Prompt], args) -> tuple[dict[str, float], list[dict]]:
        """Generate and score `prompts` with the run's settings."""
        return run_generation(model, self.tokenizer, prompts, self.gen, args.per_device_eval_batch_size, args.device)

    def callback(self):
        """A TrainerCallback adding the generation scores to every eval log entry (all ranks take part)."""
        from transformers import TrainerCallback

        owner = self

        class GenerationMetrics(TrainerCallback):
            """Runs when the Trainer logs an evaluation, before the console and TensorBoard see the entry."""

            def on_log(self, args, state, control, logs=None, model=None, **kwargs):
                if not logs or "eval_runtime" not in logs or not owner.eval_prompts:
                    return
                scores, _ = owner.run(model, owner.eval_prompts, args)
                named = {f"eval_{name}": value for name, value in scores.items()}
                logs.update(named)
                if state.log_history and state.log_history[-1].get("eval_runtime") == logs["eval_runtime"]:
                    state.log_history[-1].update(named)  # trainer_state.json keeps them too

        return GenerationMetrics()

    def predict_test(self, trainer) -> dict[str, float] | None:
        """Generate on the test set, write predictions_test.jsonl (rank 0), log and return the test metrics."""
        if not self.test_prompts:
            return None
        args = trainer.args
        scores, rows = self.run(trainer.model, self.test_prompts, args)
        if args.process_index == 0:
            path = Path(args.output_dir, "predictions_test.jsonl")
            with path.open("w", encoding="utf-8") as f:
                for row in rows:
                    line = {k: row[k] for k in ("prompt", "reference", "prediction")}
                    f.write(json.dumps(line, ensure_ascii=False) + "\n")
            say(args, f"test set: {len(rows)} predictions in {path}")
        named = {f"test_{name}": value for name, value in scores.items()}
        say(args, "test metrics: " + ", ".join(f"{name} {value:.4f}" for name, value in named.items()))
        trainer.log(dict(named))  # TensorBoard (the console's progress bar is closed by now)
        trainer.save_metrics("test", named)
        return named
