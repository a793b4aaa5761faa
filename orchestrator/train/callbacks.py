"""What the training log shows: a sanity table of the first sample, parameter counts, global batch, tokens/s.

All printing happens on global rank 0 only; HF's own progress bar is already rank-0 only. Tokens/s is computed
from the Trainer's `num_input_tokens_seen` (non-padding tokens, summed over all ranks) and added to the logged
metrics, so it also lands in TensorBoard.
"""

from __future__ import annotations

import json
import os
import time

from orchestrator.train.feed import write_json

IGNORE_INDEX = -100
PROGRESS_FILE = "progress.json"  # in $ORCH_JOB_DIR, where `orch status` reads it


def sanity_table(input_ids: list[int], labels: list[int], tokenizer, limit: int = 64, per_row: int = 4) -> str:
    """A token -> label table of one sample (first `limit` tokens, `per_row` per line) and the text trained on."""
    trained = [t for t in labels if t != IGNORE_INDEX]
    lines = [f"first training sample: {len(input_ids)} tokens, {len(trained)} trained on "
             f"(token_id 'text' -> label; - = masked from the loss)"]
    cells = []
    for pos, (tok, lab) in enumerate(zip(input_ids[:limit], labels[:limit])):
        text = tokenizer.decode([tok])[:12]
        cells.append(f"{pos:>4} {tok:>6} {text!r:<16}-> {'-' if lab == IGNORE_INDEX else lab:<6}")
    lines += ["  " + " | ".join(cells[i:i + per_row]).rstrip() for i in range(0, len(cells), per_row)]
    if len(input_ids) > limit:
        lines.append(f"  ... {len(input_ids) - limit} more tokens")
    lines.append(f"  trained text: {tokenizer.decode(trained)[:300]!r}")
    return "\n".join(lines)


def run_summary(trainable: int, total: int, args, n_train: int) -> str:
    """Trainable parameters, world size and the effective global batch size."""
    global_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    share = 100.0 * trainable / max(total, 1)
    return "\n".join([
        f"trainable params: {trainable:,} of {total:,} ({share:.2f}%)",
        f"world size: {args.world_size}; effective global batch: {global_batch} "
        f"({args.per_device_train_batch_size} per device x {args.gradient_accumulation_steps} accumulation "
        f"x {args.world_size} processes)",
        f"training samples: {n_train:,}; output: {args.output_dir}",
    ])


def throughput_callback():
    """A TrainerCallback that adds `tokens_per_second` (all ranks together) to every log entry."""
    from transformers import TrainerCallback

    class Throughput(TrainerCallback):
        """Tokens/s between two log entries, from the Trainer's own token count."""

        def __init__(self) -> None:
            self.last: tuple[float, int] | None = None
            self.began: tuple[float, int] = (time.perf_counter(), 0)

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = (time.perf_counter(), state.num_input_tokens_seen)
            self.began = (self.last[0], state.global_step)  # a resumed run counts its ETA from here

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is None or self.last is None or "loss" not in logs:
                return
            now, seen = time.perf_counter(), state.num_input_tokens_seen
            if seen > self.last[1]:
                logs["tokens_per_second"] = round((seen - self.last[1]) / max(now - self.last[0], 1e-9), 1)
            self.last = (now, seen)
            if state.is_world_process_zero:
                write_progress(state, logs, self.began)

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                write_progress(state, {}, self.began)

    return Throughput()


def write_progress(state, logs: dict, began: tuple[float, int]) -> None:
    """Step/total, epoch, last loss, tokens/s and ETA into `$ORCH_JOB_DIR/progress.json` (whole-file replace);
    nothing outside a launched job."""
    folder = os.environ.get("ORCH_JOB_DIR")
    if not folder or not os.path.isdir(folder):
        return
    previous = {}
    path = os.path.join(folder, PROGRESS_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            previous = json.load(f)
    done = state.global_step - began[1]
    per_step = (time.perf_counter() - began[0]) / done if done > 0 else None
    progress = {"step": state.global_step, "total": state.max_steps, "epoch": round(state.epoch or 0.0, 3),
                "loss": logs.get("loss", previous.get("loss")),
                "tokens_per_s": logs.get("tokens_per_second", previous.get("tokens_per_s")),
                "eta_s": None if per_step is None else round(per_step * max(state.max_steps - state.global_step, 0)),
                "time": time.time()}
    write_json(path, progress)


def say(args, message: str) -> None:
    """Print on global rank 0 only (flushing, so logs interleave sensibly with the progress bar)."""
    if args.process_index == 0:
        print(message, flush=True)
