"""What the training worker asks of the data pipeline: one dataclass, filled from the training config."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.train.data.templates import DEFAULT_TEMPLATE

TRUNCATION_STRATEGIES = ("delete", "left", "right")
STAGES = ("sft", "pt")
NO_LIMIT = 1 << 40


@dataclass
class DataSpec:
    """Where the data is and how to turn it into training rows.

    `train` entries are JSONL/JSON files, `.txt` files, index folders (with `meta.json`) or a mixture config
    `.json` (a JSON list of objects with `dataset_name`). Relative paths resolve against `base_dir`.
    `template` is `auto` (the default: the tokenizer's own chat_template, else its vocabulary's format, else chatml),
    `tokenizer`, a built-in name (chatml, qwen, raw, fm9g, chatglm3), a `.jinja` chat template file, or a mapping
    of role formats (see `templates.py`).
    An entry is a path or a mapping `{path, columns, keep_language, encoding}` (`entries.py`); `eval` may list
    several.
    `train_samples` / `eval_samples` take that many samples (seeded; -1: all, ms-swift's `*_dataset_sample`);
    `system` is the system prompt of samples that have none; `max_length: -1` is no limit; `max_input_length` and
    `max_output_length` (ChatGLM3) cut input and output separately (`pack.truncate_io`).
    `cache_dir` holds token indexes (default: `cache.default_cache_dir()`).
    `added` entries join the training set after the eval split and the `train_samples` draw, whole (the
    self-cognition rows, as ms-swift adds them after drawing from the user's data).
    """

    train: list = field(default_factory=list)
    eval: list = field(default_factory=list)
    test: str | None = None  # generated on after training (`build_test_dataset`), never trained on
    eval_ratio: float = 0.0
    template: str | dict = DEFAULT_TEMPLATE
    max_length: int = 1024
    truncation_strategy: str = "delete"
    packing: bool = False
    base_dir: str = "."
    skip_bad: bool = False
    cache_dir: str | None = None
    seed: int = 42
    train_samples: int = -1
    eval_samples: int = -1
    system: str | None = None
    max_input_length: int | None = None
    max_output_length: int | None = None
    added: list = field(default_factory=list)

    @property
    def cap(self) -> int:
        """The token limit of one sample (`max_length`, or the input and output caps together)."""
        if self.max_input_length and self.max_output_length:
            return self.max_input_length + self.max_output_length
        return self.max_length if self.max_length > 0 else NO_LIMIT

    def __post_init__(self) -> None:
        from orchestrator.errors import DataError

        if isinstance(self.train, (str, dict)):
            self.train = [self.train]
        if self.eval is None or isinstance(self.eval, (str, dict)):
            self.eval = [self.eval] if self.eval else []
        if self.truncation_strategy not in TRUNCATION_STRATEGIES:
            raise DataError(
                f"truncation_strategy must be one of {', '.join(TRUNCATION_STRATEGIES)}, "
                f"not {self.truncation_strategy!r}"
            )
        if not 0.0 <= self.eval_ratio < 1.0:
            raise DataError(f"eval_ratio must be in [0, 1), not {self.eval_ratio}")
        if self.max_length != -1 and self.max_length < 2:
            raise DataError(f"max_length must be at least 2 or -1 (no limit), not {self.max_length}")
