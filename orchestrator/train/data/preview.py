"""The first samples of a file (or mixture) encoded for `orch data preview`: ids and labels, no training."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from orchestrator.errors import DataError
from orchestrator.train.data.pack import truncate
from orchestrator.train.data.readers import iter_samples, normalise
from orchestrator.train.data.sources import is_mixture_config
from orchestrator.train.data.templates import encode_many, labels_from_mask, resolve_template

def _first_samples(path: Path, num: int) -> Iterator[tuple[str, int, object]]:
    """(source, line, Sample) of the first `num` samples of a data file, index folder or mixture config."""
    if path.is_dir():
        path = path / "data.jsonl"
    if is_mixture_config(path):
        from orchestrator.train.data.mixture import iter_mixture, load_mixture, plan_mixture

        entries = load_mixture(path)
        mixed = iter_mixture(entries, plan_mixture(entries), seed=42)
        for n, (name, record) in enumerate(itertools.islice(mixed, num), 1):
            try:
                yield name, n, normalise(record)
            except ValueError as exc:
                raise DataError(f"{path}: dataset {name}: transformed sample {n}: {exc}") from None
        return
    for line, sample in itertools.islice(iter_samples(path), num):
        yield str(path), line, sample

def preview_samples(path: str | Path, tokenizer, template: str = "auto", num: int = 3, max_length: int | None = None,
                    truncation: str = "right", stage: str = "sft") -> list[dict]:
    """Encode the first `num` samples: dicts with source, line, input_ids, labels."""
    template = resolve_template(template, tokenizer)
    rows = list(_first_samples(Path(path), num))
    out = []
    for (source, line, _), (ids, mask) in zip(rows, encode_many([s for _, _, s in rows], tokenizer, template)):
        if max_length:
            ids, mask = truncate(ids, mask, max_length, truncation)
        out.append({"source": source, "line": line, "input_ids": [int(t) for t in ids],
                    "labels": labels_from_mask(ids, np.asarray(mask), stage)})
    return out
