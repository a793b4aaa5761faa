"""The positional shapes `orch train` accepts: ours, and the ChatGLM3 guide's `finetune_hf.py` habit.

    orch train CONFIG [DS_CONFIG.json] [yes|no|STEP|CHECKPOINT]
    orch train DATA_DIR MODEL CONFIG [DS_CONFIG.json] [yes|no|STEP|CHECKPOINT]

The last word is the guide's `auto_resume_from_checkpoint`: `yes` resumes the latest checkpoint, `no` starts
fresh, a number resumes that step, a path that checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigError

USAGE = "orch train CONFIG [DS_CONFIG.json] [yes|no|STEP] or orch train DATA_DIR MODEL CONFIG [DS_CONFIG.json] [yes|no|STEP]"
CONFIG_SUFFIXES = (".yaml", ".yml")


@dataclass
class TrainArgs:
    """What the positional words said."""

    config: str
    data_dir: str | None = None
    model: str | None = None
    deepspeed: str | None = None
    resume: str | None = None


def _resume_word(word: str) -> bool:
    """yes/no/true/false/latest, a step number, or a checkpoint folder."""
    return word.lower() in ("yes", "no", "true", "false", "latest") or word.isdigit() or Path(word).is_dir()


def parse_train_args(words: tuple[str, ...]) -> TrainArgs:
    """Read the positional words of `orch train`; ConfigError (one line, with the usage) for any other shape."""
    words = list(words)
    if not words:
        raise ConfigError(f"a training config is required: {USAGE}")
    if Path(words[0]).is_dir():
        if len(words) < 3:
            raise ConfigError(f"{words[0]} is a folder: give DATA_DIR MODEL CONFIG (ChatGLM3's order), or the "
                              f"config alone; usage: {USAGE}")
        args = TrainArgs(config=words[2], data_dir=words[0], model=words[1])
        rest = words[3:]
    else:
        args, rest = TrainArgs(config=words[0]), words[1:]
    if not args.config.endswith(CONFIG_SUFFIXES):
        raise ConfigError(f"{args.config}: expected a .yaml training config here; usage: {USAGE}")
    if rest and rest[0].endswith(".json"):
        args.deepspeed, rest = rest[0], rest[1:]
    if rest and _resume_word(rest[0]):
        args.resume, rest = rest[0], rest[1:]
    if rest:
        raise ConfigError(f"unexpected {rest[0]!r}: after the config come an optional DeepSpeed .json and yes, no, "
                          f"a step number or a checkpoint folder; usage: {USAGE}")
    return args
