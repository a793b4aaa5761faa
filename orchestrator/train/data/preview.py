"""The first samples of a file (or mixture) encoded for `orch data preview`: ids and labels, no training."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from orchestrator.errors import DataError
from orchestrator.train.data.encoding import encode_rendered, labels_from_mask
from orchestrator.train.data.pack import truncate
from orchestrator.train.data.readers import iter_samples, normalise
from orchestrator.train.data.sources import is_mixture_config
from orchestrator.train.data.templates import DEFAULT_TEMPLATE, resolve_template


def _first_samples(path: Path, num: int, encoding: str | None) -> Iterator[tuple[str, int, str, object]]:
    """(source, line, where, Sample) of the first `num` samples of a data file, index folder or mixture config;
    `where` names the sample in error messages."""
    if path.is_dir():
        path = path / "data.jsonl"
    if is_mixture_config(path, encoding):
        from orchestrator.train.data.mixture import iter_mixture, load_mixture, plan_mixture

        entries = load_mixture(path, encoding)
        mixed = iter_mixture(entries, plan_mixture(entries), seed=42)
        for n, (name, record) in enumerate(itertools.islice(mixed, num), 1):
            where = f"{path}: dataset {name}: transformed sample {n}"
            try:
                yield name, n, where, normalise(record)
            except ValueError as exc:
                raise DataError(f"{where}: {exc}") from None
        return
    for line, sample in itertools.islice(iter_samples(path, encoding=encoding), num):
        yield str(path), line, f"{path}:{line}", sample


def preview_samples(path: str | Path, tokenizer, template: object = DEFAULT_TEMPLATE, num: int = 3,
                    max_length: int | None = None, truncation: str = "right", stage: str = "sft",
                    encoding: str | None = None) -> list[dict]:
    """Encode the first `num` samples: dicts with source, line, template, input_ids, labels (`encoding`: the
    file's text encoding when it is not UTF-8)."""
    template = resolve_template(template, tokenizer)
    rows = list(_first_samples(Path(path), num, encoding))
    rendered = []
    for _, _, where, sample in rows:
        try:
            rendered.append(template.render(sample))
        except ValueError as exc:
            raise DataError(f"{where}: {exc}") from None
    out = []
    for (source, line, _, _), (ids, mask) in zip(rows, encode_rendered([r[3] for r in rows], rendered, tokenizer,
                                                                         template)):
        if max_length:
            ids, mask = truncate(ids, mask, max_length, truncation)
        out.append({"source": source, "line": line, "template": template.name, "input_ids": [int(t) for t in ids],
                    "labels": labels_from_mask(ids, np.asarray(mask), stage)})
    return out
