"""What the data pipeline did, for the training log: counts and a one-paragraph summary."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataReport:
    """Counts from building the training (and eval) datasets."""

    samples_read: int = 0
    skipped_bad: int = 0
    truncation_strategy: str = "delete"
    truncated: dict[str, int] = field(default_factory=lambda: {"delete": 0, "left": 0, "right": 0})
    dropped_no_loss: int = 0
    train_samples: int = 0
    eval_samples: int = 0
    train_tokens: int = 0
    packed_rows: int = 0
    real_token_share: float | None = None
    sources: list[str] = field(default_factory=list)
    bad_examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Human-readable summary for logs."""
        touched = self.truncated.get(self.truncation_strategy, 0)
        lines = [
            f"data: {self.samples_read} samples read from {len(self.sources)} source(s), "
            f"{self.skipped_bad} bad line(s) skipped",
            f"  truncation '{self.truncation_strategy}': {touched} sample(s) "
            f"{'deleted' if self.truncation_strategy == 'delete' else 'truncated'}, "
            f"{self.dropped_no_loss} dropped with no loss tokens left",
            f"  train: {self.train_samples} samples, {self.train_tokens} tokens; eval: {self.eval_samples} samples",
        ]
        if self.packed_rows:
            lines.append(f"  packed into {self.packed_rows} rows")
        if self.real_token_share is not None:
            lines.append(f"  real-token share: {self.real_token_share:.1%}")
        lines += [f"  skipped: {example}" for example in self.bad_examples]
        return "\n".join(lines)
