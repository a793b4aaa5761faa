"""Resolve a `DataSpec.train` entry (file, index folder or mixture config) to a built `TokenIndex`."""

from __future__ import annotations

import hashlib
from pathlib import Path

from orchestrator.errors import DataError, located
from orchestrator.train.data import cache
from orchestrator.train.data.index import TokenIndex, build_index
from orchestrator.train.data.templates import Template


def is_mixture_config(path: Path) -> bool:
    """A `.json` file holding a JSON list whose first object has `dataset_name`."""
    if path.suffix != ".json" or not path.is_file():
        return False
    with open(path, encoding="utf-8") as fh:
        head = fh.read(65536).lstrip().lstrip("\ufeff")
    return head.startswith("[") and '"dataset_name"' in head.split("}", 1)[0]


def _cache_folder(cache_dir: Path, path: Path, *parts: str) -> Path:
    """A stable cache folder for one input file and the settings that shape its tokens."""
    digest = hashlib.sha256("\0".join([str(path.resolve()), *parts]).encode()).hexdigest()[:16]
    return cache_dir / f"{path.stem}-{digest}"


def open_source(entry: str, base_dir: Path, cache_dir: Path, tokenizer, template: Template, seed: int,
                skip_bad: bool) -> TokenIndex:
    """Build (or reuse) the index of one train entry and open it."""
    path = base_dir / entry
    tok_hash = cache.tokenizer_hash(tokenizer)
    describe = None
    if path.is_dir():
        record = cache.read_record(path)
        if record and record.get("tokenizer") == tok_hash and record.get("template") == template.key:
            return TokenIndex(path)
        if not (path / "data.jsonl").is_file():
            raise DataError(located(str(path), None, "a folder that is not an index (no data.jsonl)"))
        path = path / "data.jsonl"
    elif not path.is_file():
        raise DataError(located(str(path), None, "no such file or folder"))
    elif is_mixture_config(path):
        from orchestrator.train.data.mixture import materialize_mixture, sample_names

        describe = sample_names(path, seed)
        path = materialize_mixture(path, cache_dir, seed)
    out = _cache_folder(cache_dir, path, tok_hash, template.key, str(skip_bad))
    build_index(path, out, tokenizer, template=template, skip_bad=skip_bad, describe=describe)
    return TokenIndex(out)
