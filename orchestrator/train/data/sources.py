"""Resolve a `DataSpec.train` entry (file, index folder, mixture config, or a mapped/filtered file) to a built
`TokenIndex` in the content-addressed cache (`cache.py`)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from orchestrator.errors import DataError, located
from orchestrator.textio import head_text
from orchestrator.train.data import cache
from orchestrator.train.data.convert import write_jsonl_atomic
from orchestrator.train.data.entries import DataEntry, entry_records, parse_entry
from orchestrator.train.data.index import TokenIndex, build_index
from orchestrator.train.data.readers import BadLines
from orchestrator.train.data.templates import Template


def is_mixture_config(path: Path, encoding: str | None = None) -> bool:
    """A `.json` file holding a JSON list whose first object has `dataset_name`."""
    if path.suffix != ".json" or not path.is_file():
        return False
    head = head_text(path, 65536, encoding).lstrip()
    return head.startswith("[") and '"dataset_name"' in head.split("}", 1)[0]


def _say(message: str) -> None:
    """One line on stderr from global rank 0."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(message, file=sys.stderr, flush=True)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def index_mismatch(record: dict | None, tok_hash: str, template: Template) -> str | None:
    """What differs between an index folder's build record and this run ('' parts joined), None when it fits."""
    if not record:
        return "it has no build record (orch_index.json)"
    differs = []
    if record.get("tokenizer") != tok_hash:
        differs.append("it was built with another tokenizer")
    if record.get("template") != template.key:
        differs.append(f"its template is {record.get('template')}, this run's is {template.key}")
    return "; ".join(differs) or None


def _materialize(entry: DataEntry, base_dir: Path, cache_dir: Path, skip_bad: bool) -> tuple[Path, Callable]:
    """A mapped/filtered entry written once as JSONL in the cache (keyed by content and reading settings), and
    what names its line N in messages: the original file and line."""
    path = base_dir / entry.path
    if not path.is_file():
        raise DataError(located(str(path), None, "no such file"))
    sha = cache.content_hash(path, cache_dir)
    out = cache_dir / f"{path.stem}-{_digest(sha, entry.key(), str(skip_bad))}.jsonl"
    lines_file = out.with_name(f".{out.name}.lines.json")
    with cache.build_lock(out):
        if not (out.is_file() and lines_file.is_file()):
            kept = list(entry_records(entry, base_dir, BadLines(skip_bad)))
            lines_file.write_text(json.dumps([line for line, _ in kept]))
            write_jsonl_atomic((record for _, record in kept), out)
    cache.mark_used(out)
    lines = json.loads(lines_file.read_text())
    return out, lambda n: located(str(path), lines[n - 1] if 0 < n <= len(lines) else None, "").rstrip(": ")


def open_source(entry: str | dict | DataEntry, base_dir: Path, cache_dir: Path, tokenizer, template: Template,
                seed: int, skip_bad: bool, used: set[Path] | None = None) -> TokenIndex:
    """Build (or reuse) the index of one data entry and open it; the cache entries it uses go into `used`."""
    entry = parse_entry(entry, "data")
    used = used if used is not None else set()
    path = base_dir / entry.path
    tok_hash = cache.tokenizer_hash(tokenizer)
    describe = None
    if path.is_dir():
        why = index_mismatch(cache.read_record(path), tok_hash, template)
        if why is None:
            return TokenIndex(path)
        if not (path / "data.jsonl").is_file():
            raise DataError(located(str(path), None, "a folder that is not an index (no data.jsonl)"))
        _say(f"note: {path}: not used as built ({why}); tokenizing its data.jsonl again")
        path = path / "data.jsonl"
    elif not path.exists():
        raise DataError(located(str(path), None, "no such file or folder"))
    elif is_mixture_config(path, entry.encoding):
        from orchestrator.train.data.mixture import load_mixture, materialize_mixture, nlines_warnings, sample_names

        for line in nlines_warnings(path, load_mixture(path, entry.encoding)):
            _say(f"warning: {line}")
        describe = sample_names(path, seed, encoding=entry.encoding)
        path = materialize_mixture(path, cache_dir, seed, encoding=entry.encoding)
        used.add(path.resolve())
    elif not entry.plain:
        path, describe = _materialize(entry, base_dir, cache_dir, skip_bad)
        used.add(path.resolve())
    sha = cache.content_hash(path, cache_dir)
    out = cache_dir / f"{path.stem}-{_digest(sha, tok_hash, template.key, str(skip_bad))}"
    build_index(path, out, tokenizer, template=template, skip_bad=skip_bad, describe=describe, input_sha=sha,
                label=Path(entry.path).name)
    cache.mark_used(out)
    used.add(out.resolve())
    return TokenIndex(out)
