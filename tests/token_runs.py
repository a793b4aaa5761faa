"""What a sample trains on, as text: the decoded runs of consecutive tokens whose label is not -100."""

from __future__ import annotations

from orchestrator.train.data.encoding import IGNORE_INDEX


def trained_runs(tokenizer, ids: list[int], labels: list[int]) -> list[str]:
    """The decoded text of each run of consecutive tokens that carry loss."""
    runs, current = [], []
    for token, label in zip(ids, labels):
        if label != IGNORE_INDEX:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    return [tokenizer.decode(run) for run in runs + ([current] if current else [])]
