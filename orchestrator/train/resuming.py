"""What SFT and DPO share around checkpoints: which one to resume from on this world size (with the arguments
that keep its global batch), and the callbacks that dump, mark, copy and report each save."""

from __future__ import annotations

from typing import Callable

from orchestrator.train.callbacks import say
from orchestrator.train.checkpoints import completeness_callback, node_log, resolve_resume
from orchestrator.train.feed import feed_callback
from orchestrator.train.reshape import reshape
from orchestrator.train.state_dump import dump_callback


def resume_point(cfg, args, rebuild: Callable[[dict], object]):
    """(the checkpoint to resume or None, the `TrainingArguments` for this world size): every rank agrees on the
    checkpoint; `rebuild(extra)` makes the arguments again with overrides (`reshape`)."""
    resume = resolve_resume(cfg.resume_from_checkpoint, args.output_dir, node_log(args), cfg.checkpoint_copies)
    return resume, reshape(resume, args, rebuild, log=lambda line: say(args, line))


def checkpoint_callbacks(cfg) -> list:
    """The state dump (tests only), the completeness marker (and copies), and the metric feed."""
    return [c for c in (dump_callback(), completeness_callback(cfg.checkpoint_copies), feed_callback()) if c]
