"""The metric feed in the job folder (`$ORCH_JOB_DIR`), read by `orch status`'s probe and `orch dashboard`.

- `metrics.jsonl` (global rank 0): one JSON line per logged entry: step, epoch, time and every number the Trainer
  logged (loss, learning_rate, grad_norm, tokens_per_second, every eval_* including eval_rouge-*/eval_bleu-4).
- `timing/rank-<RANK>.json` (every rank, whole-file replace at most once a second): this rank's recent step timing.
  With DDP every rank's end-to-end step time is the same (all wait at the all-reduce), so it records what differs:
  forward compute (hooks on the model, eval forwards excluded), backward compute (from the end of the forward to
  the last gradient accumulated, before DDP's final all-reduce wait) and data wait (time inside the train
  dataloader's `next()`; the gaps between steps also hold collectives, e.g. the logged loss's gather, where a rank
  waits for rank 0's logging, so they are not counted).

Outside a launched job (no `$ORCH_JOB_DIR`) the callback does nothing. Test hook:
`ORCH_FAILPOINT=slow-rank:RANK:SECONDS` sleeps SECONDS in that rank's every training forward.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque

METRICS_FILE = "metrics.jsonl"
TIMING_DIR = "timing"
WINDOW = 20  # steps averaged into the "recent" timing
WRITE_EVERY_S = 1.0


def slow_rank_seconds(rank: int) -> float:
    """The failpoint's delay for this rank (0 when not asked for)."""
    point, _, rest = os.environ.get("ORCH_FAILPOINT", "").partition(":")
    target, _, seconds = rest.partition(":")
    if point == "slow-rank" and target == str(rank):
        return float(seconds or 0)
    return 0.0


class StepClock:
    """Per-step forward/backward/data-wait seconds of one rank, from model hooks; no device syncs."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.forward = self.backward = self.wait = 0.0
        self.tokens = 0
        self._began = time.perf_counter()
        self.forward_end: float | None = None
        self.last_grad: float | None = None
        self.recent: deque[tuple[float, float, float, int, float]] = deque(maxlen=WINDOW)

    def install(self, model) -> None:
        try:
            model.register_forward_pre_hook(self._before_forward, with_kwargs=True)
        except TypeError:  # torch < 2.0: positional inputs only
            model.register_forward_pre_hook(lambda module, args: self._before_forward(module, args, {}))
        model.register_forward_hook(self._after_forward)
        for param in model.parameters():
            if param.requires_grad and hasattr(param, "register_post_accumulate_grad_hook"):
                param.register_post_accumulate_grad_hook(self._grad_ready)

    def time_loader(self, loader) -> None:
        """Count the time spent in the train loader's next() as data wait: the torch DataLoader (under
        accelerate's wrapper, when there is one) gets a timing subclass of its own class."""
        loader = getattr(loader, "base_dataloader", loader)
        clock, base = self, type(loader)

        def timed_iter(self):
            batches = base.__iter__(self)
            while True:
                began = time.perf_counter()
                try:
                    batch = next(batches)
                except StopIteration:
                    return
                clock.wait += time.perf_counter() - began
                yield batch

        try:
            loader.__class__ = type(base.__name__, (base,), {"__iter__": timed_iter})
        except (TypeError, AttributeError):  # a loader whose class cannot be swapped: no data-wait figure
            return

    def _close_backward(self) -> None:
        if self.forward_end is not None and self.last_grad is not None and self.last_grad > self.forward_end:
            self.backward += self.last_grad - self.forward_end
        self.forward_end = self.last_grad = None

    def _before_forward(self, module, args, kwargs):
        if not module.training:
            return None
        self._close_backward()
        now = time.perf_counter()
        ids = kwargs.get("input_ids") if kwargs else None
        if ids is None and args:
            ids = args[0]
        self.tokens += int(getattr(ids, "numel", lambda: 0)())
        self._began = now
        if self.delay:
            time.sleep(self.delay)
        return None

    def _after_forward(self, module, args, output):
        if module.training:
            self.forward_end = time.perf_counter()
            self.forward += self.forward_end - self._began
        return None

    def _grad_ready(self, param) -> None:
        self.last_grad = time.perf_counter()

    def step_done(self) -> None:
        """Close the optimizer step: keep its numbers in the recent window and start the next."""
        self._close_backward()
        now = time.perf_counter()
        self.recent.append((self.forward, self.backward, self.wait, self.tokens, now))
        self.forward = self.backward = self.wait = 0.0
        self.tokens = 0

    def summary(self) -> dict:
        """Mean seconds per step over the recent window, and this rank's tokens/s over it."""
        n = len(self.recent)
        if not n:
            return {}
        forward, backward, wait = (sum(r[i] for r in self.recent) / n for i in range(3))
        span = self.recent[-1][4] - self.recent[0][4]
        tokens = sum(r[3] for r in list(self.recent)[1:])
        return {"forward_s": round(forward, 5), "backward_s": round(backward, 5),
                "compute_s": round(forward + backward, 5), "data_wait_s": round(wait, 5),
                "tokens_per_s": round(tokens / span, 1) if span > 0 else None, "window": n}


def metric_line(step: int, epoch: float | None, logs: dict) -> dict:
    """One metrics.jsonl entry: the step, epoch, time and every number in the logged entry."""
    line = {"step": step, "epoch": round(epoch or 0.0, 4), "time": round(time.time(), 3)}
    for key, value in logs.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in line:
            line[key] = value
    return line


def write_json(path: str, data: dict) -> None:
    """Replace `path` whole (a reader never sees half a file)."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(path + ".tmp", path)


def feed_callback():
    """A TrainerCallback writing metrics.jsonl (rank 0) and this rank's timing file; inert outside a job."""
    from transformers import TrainerCallback

    class Feed(TrainerCallback):
        """Appends logged entries, times steps, and writes the timing file at most once a second."""

        def __init__(self) -> None:
            self.folder = os.environ.get("ORCH_JOB_DIR") or ""
            self.rank = int(os.environ.get("RANK", "0"))
            self.clock = StepClock(slow_rank_seconds(self.rank))
            self.written = 0.0

        def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
            if not os.path.isdir(self.folder) or model is None:
                self.folder = ""
                return
            os.makedirs(os.path.join(self.folder, TIMING_DIR), exist_ok=True)
            self.clock.install(model)
            if train_dataloader is not None:
                self.clock.time_loader(train_dataloader)

        def on_step_end(self, args, state, control, **kwargs):
            if not self.folder:
                return
            self.clock.step_done()
            if time.monotonic() - self.written >= WRITE_EVERY_S:
                self.write_timing(state)

        def on_train_end(self, args, state, control, **kwargs):
            if self.folder:
                self.write_timing(state)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not self.folder or not logs or not state.is_world_process_zero:
                return
            line = json.dumps(metric_line(state.global_step, state.epoch, logs)) + "\n"
            with open(os.path.join(self.folder, METRICS_FILE), "a", encoding="utf-8") as f:
                f.write(line)  # one write per line: a reader sees whole lines or a cut-off last one

        def write_timing(self, state) -> None:
            self.written = time.monotonic()
            timing = {"rank": self.rank, "local_rank": int(os.environ.get("LOCAL_RANK", "0")),
                      "node": os.environ.get("ORCH_NODE", ""), "pid": os.getpid(), "step": state.global_step,
                      "time": round(time.time(), 3), **self.clock.summary()}
            write_json(os.path.join(self.folder, TIMING_DIR, f"rank-{self.rank}.json"), timing)

    return Feed()
