"""Benchmark the training worker (issue 4): step-time overhead vs a plain HF Trainer script, and packing's gain.

Everything is built locally in a temp folder (nothing from a hub): a small Llama (hidden 256, 4 layers by default)
with the demo tokenizer, the demo's 200 chat samples, and a long-tailed chat set generated from their words.
Each measurement runs in its own child process (`python bench/train_step.py --worker KIND ...`), one after the
other, all with the same OMP_NUM_THREADS, so they share no state.

1. Step time, ours vs plain, on the 200 demo samples (max_length 256, LoRA, packing off):
     ours:  `orchestrator.train.run.run(load_config(yaml))` with `finetuning: lora`, `packing: false`, run as a
            launched job runs it (`ORCH_JOB_DIR` set: progress.json and the metric feed, issue 18, are written);
     plain: a hand-written script: `tokenizer.apply_chat_template(..., return_assistant_tokens_mask=True)`, labels
            = input_ids with non-assistant tokens set to -100, peft `LoraConfig` with the same r/alpha/dropout/
            targets, `DataCollatorForSeq2Seq` padding, `transformers.Trainer` with the same TrainingArguments values.
   Both get a timing callback (added to the Trainer by wrapping `Trainer.__init__` in the child, so our worker's
   code is untouched) that records `time.perf_counter()` at every `on_step_end`. Step time = (t[last] - t[warmup])
   / (max_steps - warmup): training steps only, after `--warmup` warm-up steps; loading, tokenization and the final
   save are outside the window. Ratio ours/plain (target <= 1.05). Beside it, "no-feed" is ours without
   `ORCH_JOB_DIR`: the metric feed's own cost is ours/no-feed (target <= 1.02).
2. Packed vs padded, our worker on the long-tailed set (max_length 512, same steps and batch size):
   real tokens/s = tokens with label != -100 (trained-on) and non-pad input tokens (attention mask for padded
   rows; input_ids != pad for packed rows), counted per micro-batch by wrapping `Trainer.training_step`, over the
   same timed window. Ratio packed/padded (target >= 1.8).
3. Start-up, what a user waits for: seconds from starting the command to the first logged loss (logging_steps 1),
   `orch train CONFIG` (default flags: one process) vs the plain script above run as `python script` on the same
   config; both children unbuffered, their merged output read line by line. Best of `--repeats` runs each, ABBA
   order. Ratio ours/plain (target <= 1.2). Beside it, `orch train --nproc-per-node 2` vs the plain script under
   `torchrun --nproc-per-node 2` (torchrun's own start-up on both sides).

    python bench/train_step.py [--steps 30] [--warmup 5] [--hidden 256] [--layers 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

IGNORE_INDEX = -100
LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                  "gate_proj", "up_proj", "down_proj"]}


# ----------------------------------------------------------------------------------------------------- children

def install_probes(warmup: int, pad_id: int) -> dict[str, list]:
    """Wrap `Trainer.__init__` (adds a step-end timer) and `Trainer.training_step` (counts real tokens).

    Returns the dict the probes fill: `times` (perf_counter at each step end) and `tokens` (per micro-batch:
    [trained-on label tokens, non-pad input tokens, padded tensor size]).
    """
    from transformers import Trainer, TrainerCallback

    record: dict[str, list] = {"times": [], "tokens": []}

    class StepTimer(TrainerCallback):
        """perf_counter() at the end of every optimizer step."""

        def on_step_end(self, args, state, control, **kwargs):
            record["times"].append(time.perf_counter())

    original_init, original_step = Trainer.__init__, Trainer.training_step

    @functools.wraps(original_init)  # keeps the signature that compat.tokenizer_kwarg inspects
    def init(self, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.add_callback(StepTimer())

    def training_step(self, model, inputs, *args: Any, **kwargs: Any):
        labels, ids = inputs["labels"], inputs["input_ids"]
        mask = inputs.get("attention_mask")
        real = int(mask.sum()) if mask is not None else int((ids != pad_id).sum())
        record["tokens"].append([int((labels != IGNORE_INDEX).sum()), real, int(ids.numel())])
        return original_step(self, model, inputs, *args, **kwargs)

    Trainer.__init__, Trainer.training_step = init, training_step
    return record


def summarise(record: dict[str, list], warmup: int) -> dict[str, float]:
    """Step time and tokens/s over the steps after `warmup` (grad accumulation 1: one micro-batch per step)."""
    times, tokens = record["times"], record["tokens"]
    steps = len(times) - 1 - warmup
    if steps < 1:
        raise RuntimeError(f"only {len(times)} steps recorded; need more than warmup={warmup}")
    elapsed = times[-1] - times[warmup]
    window = tokens[warmup + 1:len(times)]
    durations = [b - a for a, b in zip(times[warmup:], times[warmup + 1:])]
    label_tok, real_tok, padded_tok = (sum(t[i] for t in window) for i in range(3))
    return {
        "steps": steps,
        "step_s": elapsed / steps,
        "step_median_s": statistics.median(durations),
        "label_tok_per_s": label_tok / elapsed,
        "real_tok_per_s": real_tok / elapsed,
        "real_share": real_tok / max(padded_tok, 1),
        "tok_per_step": real_tok / steps,
    }


def run_ours(cfg_path: Path, warmup: int) -> dict[str, float]:
    """Our worker, exactly as `python -m orchestrator.train CONFIG` runs it."""
    from transformers import AutoTokenizer

    from orchestrator.train.config import load_config
    from orchestrator.train.run import run

    cfg = load_config(cfg_path)
    record = install_probes(warmup, AutoTokenizer.from_pretrained(cfg.model).pad_token_id)
    run(cfg)
    return summarise(record, warmup)


def run_plain(cfg_path: Path, warmup: int) -> dict[str, float]:
    """A minimal hand-written HF Trainer + peft LoRA script reading the same YAML values."""
    from transformers import AutoTokenizer

    model_dir = yaml.safe_load(cfg_path.read_text())["model"]
    record = install_probes(warmup, AutoTokenizer.from_pretrained(model_dir).pad_token_id)  # before the Trainer
    trainer, _ = plain_trainer(cfg_path)
    trainer.train()
    return summarise(record, warmup)


def plain_trainer(cfg_path: Path):
    """(Trainer, tokenizer) of the plain script: chat template with assistant masks, peft LoRA, padding collator."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer,
                              TrainingArguments, set_seed)

    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    data, lora = cfg["data"], cfg["lora"]
    tokenizer = AutoTokenizer.from_pretrained(cfg["model"])
    rows = []
    for line in Path(data["train"][0]).read_text(encoding="utf-8").splitlines():
        enc = tokenizer.apply_chat_template(json.loads(line)["messages"], tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        ids, keep = list(enc["input_ids"]), list(enc["assistant_masks"])
        if len(ids) <= data["max_length"]:  # like `truncation_strategy: delete`
            rows.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                         "labels": [t if m else IGNORE_INDEX for t, m in zip(ids, keep)]})
    args = TrainingArguments(**cfg["training_args"], use_cpu=True)
    set_seed(args.seed)
    model = AutoModelForCausalLM.from_pretrained(cfg["model"], dtype=torch.float32)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                             target_modules=lora["target_modules"], task_type="CAUSAL_LM"))
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=IGNORE_INDEX)
    return Trainer(model=model, args=args, train_dataset=rows, data_collator=collator), tokenizer


# ------------------------------------------------------------------------------------------------------- parent

def demo_chats(sample: Path) -> list[list[dict[str, str]]]:
    """The demo samples as chat message lists (its alpaca-style records become one user/assistant exchange)."""
    chats = []
    for line in sample.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if "messages" in rec:
            chats.append(rec["messages"])
            continue
        prompt = "\n".join(p for p in (rec.get("instruction", ""), rec.get("input", "")) if p)
        chats.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": rec["output"]}])
    return chats


def write_jsonl(chats: list[list[dict[str, str]]], out: Path) -> Path:
    """One `{"messages": [...]}` record per line."""
    out.write_text("".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in chats), encoding="utf-8")
    return out


def long_tailed_chats(chats: list[list[dict[str, str]]], n: int, max_words: int,
                      seed: int = 0) -> list[list[dict[str, str]]]:
    """Chats whose lengths are log-normal (many short, a few long), using the demo samples' words."""
    words = [w for chat in chats for turn in chat for w in turn["content"].split()]
    r = random.Random(seed)
    out = []
    for _ in range(n):
        total = min(int(r.lognormvariate(3.3, 1.0)) + 4, max_words)
        user = max(1, int(total * r.uniform(0.2, 0.5)))
        out.append([{"role": "user", "content": " ".join(r.choices(words, k=user))},
                    {"role": "assistant", "content": " ".join(r.choices(words, k=max(1, total - user)))}])
    return out


def length_summary(model: Path, chats: list[list[dict[str, str]]], max_length: int) -> str:
    """Token-length percentiles of `chats` under the model's chat template."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    lengths = sorted(len(tok.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"]) for c in chats)
    pick = lambda q: lengths[min(len(lengths) - 1, int(q * len(lengths)))]  # noqa: E731
    over = sum(n > max_length for n in lengths)
    return (f"long-tail set: {len(lengths)} chats, tokens median {pick(0.5)}, p90 {pick(0.9)}, p99 {pick(0.99)}, "
            f"max {lengths[-1]}; {over} over max_length {max_length} (dropped: truncation_strategy delete)")


def write_config(path: Path, model: Path, train: Path, out: Path, max_length: int, packing: bool,
                 steps: int, batch: int, cache: Path, logging_steps: int = 10) -> Path:
    """Our worker's YAML; the plain script reads the same values (it ignores keys it has no use for)."""
    cfg = {
        "model": str(model), "stage": "sft", "finetuning": "lora",
        "data": {"train": [str(train)], "template": "chatml", "max_length": max_length, "packing": packing,
                 "cache_dir": str(cache)},
        "lora": LORA,
        "training_args": {"output_dir": str(out), "max_steps": steps, "per_device_train_batch_size": batch,
                          "gradient_accumulation_steps": 1, "learning_rate": 1e-3, "lr_scheduler_type": "constant",
                          "logging_steps": logging_steps, "seed": 42, "report_to": "none", "save_strategy": "no",
                          "dataloader_num_workers": 0, "disable_tqdm": True},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def child(kind: str, cfg: Path, warmup: int, threads: int, result: Path, job_dir: Path | None = None
          ) -> dict[str, float]:
    """Run one measurement in a fresh interpreter; its output is shown only when it fails. With `job_dir` the
    worker runs as in a launched job (`ORCH_JOB_DIR`): progress.json and the metric feed are written there."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    env.pop("ORCH_JOB_DIR", None)
    if job_dir is not None:
        job_dir.mkdir(parents=True, exist_ok=True)
        env["ORCH_JOB_DIR"] = str(job_dir)
    argv = [sys.executable, __file__, "--worker", kind, "--config", str(cfg), "--warmup", str(warmup),
            "--result", str(result)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"child {kind} {cfg.name} failed (exit {proc.returncode})")
    return json.loads(result.read_text())


def time_to_first_loss(argv: list[str], threads: int) -> float:
    """Seconds from starting `argv` to the first line of its output that logs a loss; it then runs to its end."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1",
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first, seen = None, []
    for line in proc.stdout:
        seen.append(line)
        if first is None and "'loss'" in line:
            first = time.perf_counter() - started
    if proc.wait() != 0 or first is None:
        sys.stderr.write("".join(seen)[-4000:])
        raise SystemExit(f"{' '.join(argv[:4])}: exit {proc.returncode}, loss logged: {first is not None}")
    return first


def startup(root: Path, model: Path, data: Path, repeats: int, threads: int) -> dict[str, float]:
    """Best time to the first logged loss: `orch train` and the plain script, one process and two."""
    orch = shutil.which("orch") or "orch"
    cfg = write_config(root / "startup.yaml", model, data, root / "out" / "startup", 256, False, 3, 2,
                       root / "cache", logging_steps=1)
    plain = [sys.executable, __file__, "--worker", "plain-start", "--config", str(cfg)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    runs = {"orch": [orch, "train", str(cfg)], "plain": plain,
            "orch x2": [orch, "train", "--nproc-per-node", "2", str(cfg)], "plain x2": torchrun + plain[1:]}
    order = list(runs) + list(runs)[::-1]
    best: dict[str, float] = {}
    for name in order * max(1, repeats // 2):
        took = time_to_first_loss(runs[name], threads)
        best[name] = min(best.get(name, took), took)
    return best


def report_startup(best: dict[str, float]) -> None:
    """The start-up table and its ratio against the target."""
    print("start-up: seconds from the command to its first logged loss (best of the runs; default flags)")
    for name in ("orch", "plain", "orch x2", "plain x2"):
        print(f"  {name:<9}{best[name]:>7.2f} s")
    ratio, ratio2 = best["orch"] / best["plain"], best["orch x2"] / best["plain x2"]
    print(f"start-up orch train / plain script: {ratio:.2f}  target <= 1.2  {'PASS' if ratio <= 1.2 else 'FAIL'}"
          f"   (2 processes, vs the plain script under torchrun: {ratio2:.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=["ours", "plain", "plain-start"], help=argparse.SUPPRESS)
    ap.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="runs of each of ours/plain (ABBA order); best kept")
    ap.add_argument("--max-length", type=int, default=512, help="for the packed vs padded comparison")
    ap.add_argument("--only", choices=["steps", "startup"], help="run one part (default: both)")
    a = ap.parse_args()
    if a.worker == "plain-start":
        plain_trainer(a.config)[0].train()
        return
    if a.worker:
        fn = run_ours if a.worker == "ours" else run_plain
        a.result.write_text(json.dumps(fn(a.config, a.warmup)))
        return

    from orchestrator.demo import SAMPLE_DATA
    from orchestrator.train.tiny import build_tiny_model

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="orch-bench-train-") as tmp:
        root = Path(tmp)
        chats = demo_chats(SAMPLE_DATA)
        texts = [turn["content"] for chat in chats for turn in chat]
        model = build_tiny_model(root / "base", hidden_size=a.hidden, num_layers=a.layers, extra_text=texts)
        demo = write_jsonl(chats, root / "demo.jsonl")
        start = startup(root, model, demo, a.repeats, a.threads) if a.only != "steps" else None
        if start is not None:
            report_startup(start)
        if a.only == "startup":
            print(f"wall time: {time.perf_counter() - started:.0f} s")
            return
        tail_chats = long_tailed_chats(chats, n=800, max_words=a.max_length // 3)
        tail = write_jsonl(tail_chats, root / "long_tail.jsonl")
        lengths = length_summary(model, tail_chats, a.max_length)
        plan = [("ours", "ours", demo, 256, False), ("plain", "plain", demo, 256, False),
                ("no-feed", "ours", demo, 256, False)]
        plan = plan + plan[::-1] if a.repeats > 1 else plan  # ABBA: drifting background load hits both alike
        plan = plan * max(1, a.repeats // 2)
        plan += [("padded", "ours", tail, a.max_length, False), ("packed", "ours", tail, a.max_length, True)]
        tries: dict[str, list[dict[str, float]]] = {}
        for i, (name, kind, data, max_len, packing) in enumerate(plan):
            cfg = write_config(root / f"{name}{i}.yaml", model, data, root / "out" / f"{name}{i}", max_len,
                               packing, a.steps, a.batch, root / "cache")
            job_dir = root / "jobs" / f"{i}" if name == "ours" else None  # as launched: the metric feed on
            tries.setdefault(name, []).append(child(kind, cfg, a.warmup, a.threads, root / f"{name}{i}.json",
                                                    job_dir))
        res = {name: min(rs, key=lambda r: r["step_median_s"]) for name, rs in tries.items()}

    print(f"model: Llama hidden {a.hidden}, {a.layers} layers, LoRA r={LORA['r']} on all linear; batch {a.batch}; "
          f"{a.steps} steps, timed after {a.warmup} warm-up steps; OMP_NUM_THREADS={a.threads}; "
          f"ours/plain: best of {len(tries['ours'])} runs each (lowest median step)")
    head = (f"{'run':<8}{'data':<22}{'step ms':>9}{'median ms':>11}{'tok/step':>10}{'real tok/s':>12}"
            f"{'label tok/s':>13}{'real share':>12}")
    print(lengths)
    print(head)
    print("-" * len(head))
    labels = {"ours": "demo 200, len<=256", "plain": "demo 200, len<=256",
              "padded": f"long-tail, len<={a.max_length}", "packed": f"long-tail, len<={a.max_length}",
              "no-feed": "demo 200, len<=256"}
    for name, r in res.items():
        print(f"{name:<8}{labels[name]:<22}{r['step_s'] * 1e3:>9.1f}{r['step_median_s'] * 1e3:>11.1f}"
              f"{r['tok_per_step']:>10.0f}{r['real_tok_per_s']:>12.0f}{r['label_tok_per_s']:>13.0f}"
              f"{r['real_share']:>12.2f}")
    step_ratio = res["ours"]["step_s"] / res["plain"]["step_s"]
    median_ratio = res["ours"]["step_median_s"] / res["plain"]["step_median_s"]
    pack_ratio = res["packed"]["real_tok_per_s"] / res["padded"]["real_tok_per_s"]
    label_ratio = res["packed"]["label_tok_per_s"] / res["padded"]["label_tok_per_s"]
    print(f"step time ours/plain: {step_ratio:.3f} (median {median_ratio:.3f})  target <= 1.05  "
          f"{'PASS' if step_ratio <= 1.05 else 'FAIL'}")
    feed_ratio = res["ours"]["step_median_s"] / res["no-feed"]["step_median_s"]
    print(f"metric feed (ORCH_JOB_DIR set, as launched) / feed off, median step: {feed_ratio:.3f}  target <= 1.02  "
          f"{'PASS' if feed_ratio <= 1.02 else 'FAIL'}")
    print(f"real tokens/s packed/padded: {pack_ratio:.2f} (label tokens {label_ratio:.2f})  target >= 1.8  "
          f"{'PASS' if pack_ratio >= 1.8 else 'FAIL'}")
    print(f"wall time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
