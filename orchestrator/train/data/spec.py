"""What the training worker asks of the data pipeline: one dataclass, filled from the training config."""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.train.data.templates import DEFAULT_TEMPLATE

TRUNCATION_STRATEGIES = ("delete", "left", "right")
STAGES = ("sft", "pt")


@dataclass
class DataSpec:
    """Where the data is and how to turn it into training rows.

    `train` entries are JSONL/JSON files, `.txt` files, index folders (with `meta.json`) or a mixture config
    `.json` (a JSON list of objects with `dataset_name`). Relative paths resolve against `base_dir`.
    `template` is `auto` (the default: the tokenizer's own chat_template, else its vocabulary's format, else chatml),
    `tokenizer`, a built-in name (chatml, qwen, raw, fm9g, chatglm3), a `.jinja` chat template file, or a mapping
    of role formats (see `templates.py`).
    `cache_dir` holds token indexes built from plain files (default `$XDG_CACHE_HOME/orch/data`).
    """

    train: list[str] = field(default_factory=list)
    eval: str | None = None
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

    def __post_init__(self) -> None:
        from orchestrator.errors import DataError

        if isinstance(self.train, str):
            self.train = [self.train]
        if self.truncation_strategy not in TRUNCATION_STRATEGIES:
            raise DataError(
                f"truncation_strategy must be one of {', '.join(TRUNCATION_STRATEGIES)}, "
                f"not {self.truncation_strategy!r}"
            )
        if not 0.0 <= self.eval_ratio < 1.0:
            raise DataError(f"eval_ratio must be in [0, 1), not {self.eval_ratio}")
        if self.max_length < 2:
            raise DataError(f"max_length must be at least 2, not {self.max_length}")
