"""A data entry: a file plus how to read it, a field mapping (`input=Question,output=Response`) and a language
filter (`keep_language: zh`) and its text encoding (`encoding: gb18030`; default UTF-8, see `orchestrator.textio`),
as `orch data convert --map/--keep-language/--encoding` and a config's `data.train` take them.

    data:
      train:
        - data/medical.json                                   # a plain path
        - {path: data/medical_o1.json, columns: {input: Question, output: Response}, keep_language: zh}
        - {path: data/excel_export.csv, encoding: gb18030}

A mapping renames source fields to ours before the format is recognised (unmapped fields stay); the language
filter keeps a record when it has Chinese characters (`zh`) or has none (`en`), looking at every string in it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import DataError, located
from orchestrator.textio import check_encoding
from orchestrator.train.data.readers import BadLines, iter_records, preference_pair

LANGUAGES = ("zh", "en")
ENTRY_KEYS = ("path", "columns", "keep_language", "encoding")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class DataEntry:
    """One data file and how to read it; `columns` holds (our field, source field) pairs; `encoding` the file's
    text encoding when it is not UTF-8 (None: UTF-8, or what its byte-order mark says)."""

    path: str
    columns: tuple[tuple[str, str], ...] = ()
    keep_language: str | None = None
    encoding: str | None = None

    @property
    def plain(self) -> bool:
        """Read as is: no mapping, no filter, no named encoding."""
        return not self.columns and not self.keep_language and not self.encoding

    def key(self) -> str:
        """What the reading adds to the file's content, for cache keys ('' when plain)."""
        if self.plain:
            return ""
        blob = json.dumps([list(self.columns), self.keep_language] + ([self.encoding] if self.encoding else []))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def parse_columns(value: object, where: str) -> tuple[tuple[str, str], ...]:
    """`input=Question,output=Response` or a mapping `{input: Question}` -> (ours, theirs) pairs."""
    if isinstance(value, str):
        pairs = [part.split("=", 1) for part in value.split(",") if part.strip()]
        if not pairs or any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
            raise DataError(f"{where}: expected OURS=THEIRS[,OURS=THEIRS...] (e.g. input=Question,output=Response), "
                            f"got {value!r}")
        return tuple((a.strip(), b.strip()) for a, b in pairs)
    if isinstance(value, dict) and value and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return tuple(value.items())
    raise DataError(f"{where}: expected a mapping of our field to the file's field (e.g. {{input: Question}}), "
                    f"got {value!r}")


def check_language(value: object, where: str) -> str | None:
    """`zh`, `en` or None."""
    if value is None or value in LANGUAGES:
        return value
    raise DataError(f"{where}: expected one of {', '.join(LANGUAGES)} (got {value!r})")


def parse_entry(value: object, where: str) -> DataEntry:
    """A path string or `{path, columns, keep_language, encoding}`; DataError names `where` and the key."""
    if isinstance(value, DataEntry):
        return value
    if isinstance(value, str) and value:
        return DataEntry(value)
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected a path or a mapping with {', '.join(ENTRY_KEYS)} (got {value!r})")
    for key in value:
        if key not in ENTRY_KEYS:
            raise DataError(f"{where}.{key}: unknown key (known: {', '.join(ENTRY_KEYS)})")
    if not isinstance(value.get("path"), str) or not value["path"]:
        raise DataError(f"{where}.path: required (the data file)")
    columns = parse_columns(value["columns"], f"{where}.columns") if value.get("columns") else ()
    encoding = value.get("encoding")
    encoding = check_encoding(encoding, f"{where}.encoding") if encoding is not None else None
    return DataEntry(value["path"], columns, check_language(value.get("keep_language"), f"{where}.keep_language"),
                     encoding)


def has_chinese(value: object) -> bool:
    """Whether any string in a record (nested lists and dicts included) has a CJK ideograph."""
    if isinstance(value, str):
        return _CJK.search(value) is not None
    if isinstance(value, dict):
        return any(has_chinese(v) for v in value.values())
    if isinstance(value, list):
        return any(has_chinese(v) for v in value)
    return False


def mapped(record: object, columns: tuple[tuple[str, str], ...]) -> object:
    """`record` with each source field renamed to ours; ValueError names a missing source field."""
    if not columns:
        return record
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    missing = [theirs for _, theirs in columns if theirs not in record]
    if missing:
        raise ValueError(f"no field {missing[0]!r} to map (fields: {', '.join(map(str, record))})")
    sources = {theirs for _, theirs in columns}
    out = {k: v for k, v in record.items() if k not in sources}
    out.update({ours: record[theirs] for ours, theirs in columns})
    return out


@dataclass
class Tally:
    """Records left out by the language filter."""

    filtered: int = 0


def entry_records(entry: DataEntry, base_dir: str | Path = ".", bad: BadLines | None = None,
                  tally: Tally | None = None) -> Iterator[tuple[int, object]]:
    """(line, record) of an entry's file, mapped and filtered; a record that cannot be mapped goes to `bad`."""
    bad = bad or BadLines()
    path = Path(base_dir) / entry.path
    for line, record in iter_records(path, bad, entry.encoding):
        try:
            record = mapped(record, entry.columns)
        except ValueError as exc:
            bad.report(path, line, str(exc))
            continue
        if entry.keep_language and has_chinese(record) != (entry.keep_language == "zh"):
            if tally is not None:
                tally.filtered += 1
            continue
        yield line, record


def read_preference(entries: list | str, base_dir: str | Path = ".", skip_bad: bool = False) -> list[dict]:
    """Read preference pairs (ours or ms-swift's) as `{"prompt","chosen","rejected"}` for trl.

    Fields stay as given when all three are strings; when any is a message list, all three become message lists
    (a string prompt becomes one user message, a string answer one assistant message; ms-swift's history and
    system go into the prompt). `entries`: paths or data entries (mapping, language filter).
    """
    bad = BadLines(skip_bad=skip_bad)
    out: list[dict] = []
    entries = [parse_entry(e, "data") for e in ([entries] if isinstance(entries, str) else entries)]
    for entry in entries:
        for line, record in entry_records(entry, base_dir, bad):
            try:
                out.append(preference_pair(record))
            except ValueError as exc:
                bad.report(Path(base_dir) / entry.path, line, str(exc))
    if not out:
        raise DataError(located(", ".join(e.path for e in entries), None, "no preference samples"))
    return out
