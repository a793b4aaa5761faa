"""Readers for every format of DESIGN.md section 4, normalised to `Sample` (or preference dicts).

A file is JSONL (one object per line) or one JSON list; `.txt` is one pretraining sample per non-empty line.
Every problem is reported as `file:line: problem`; with `skip_bad` bad lines are counted instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import DataError, located
from orchestrator.train.data.samples import Sample, chat_from_messages


@dataclass
class BadLines:
    """Bad-line policy and tally: raise on the first one, or (skip_bad) count them and keep the first few."""

    skip_bad: bool = False
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def report(self, path: str | Path, line: int | None, problem: str) -> None:
        """Raise `DataError(file:line: problem)`, or count it when skipping bad lines."""
        message = located(str(path), line, problem)
        if not self.skip_bad:
            raise DataError(message)
        self.count += 1
        if len(self.examples) < 5:
            self.examples.append(message)


def _line_of(text: str, pos: int, cache: list[int]) -> int:
    """1-based line number of character `pos`, counting incrementally from the last call."""
    last_pos, last_line = cache
    last_line += text.count("\n", last_pos, pos)
    cache[:] = [pos, last_line]
    return last_line


def _iter_json_list(path: Path, text: str) -> Iterator[tuple[int, object]]:
    """Yield (line, element) of a JSON list, with the line each element starts on."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    cache = [0, 1]
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise DataError(located(str(path), _line_of(text, pos, cache), "JSON list is not closed with ']'"))
        if text[pos] == "]":
            return
        line = _line_of(text, pos, cache)
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataError(located(str(path), _line_of(text, exc.pos, cache), f"malformed JSON: {exc.msg}")) from None
        yield line, value


def first_char(path: Path) -> str:
    """The first non-whitespace character of a file ('' when the file is blank)."""
    with open(path, encoding="utf-8") as fh:
        while chunk := fh.read(4096):
            stripped = chunk.lstrip().lstrip("\ufeff")
            if stripped:
                return stripped[0]
    return ""


def iter_records(path: str | Path, bad: BadLines | None = None) -> Iterator[tuple[int, object]]:
    """Yield (line, record) from a JSONL file, a JSON list file, or a `.txt` file (records `{"text": line}`)."""
    path = Path(path)
    bad = bad or BadLines()
    if not path.is_file():
        raise DataError(located(str(path), None, "no such file"))
    first = first_char(path)
    if not first:
        raise DataError(located(str(path), None, "the file is empty"))
    if path.suffix == ".txt":
        with open(path, encoding="utf-8") as fh:
            for n, raw in enumerate(fh, 1):
                if raw.strip():
                    yield n, {"input": "", "output": raw.rstrip("\r\n")}
        return
    if first == "[":
        yield from _iter_json_list(path, path.read_text(encoding="utf-8").lstrip("\ufeff"))
        return
    with open(path, encoding="utf-8") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                yield n, json.loads(raw)
            except json.JSONDecodeError as exc:
                bad.report(path, n, f"malformed JSON: {exc.msg} (column {exc.colno})")


def _text(record: dict, key: str, required: bool = True) -> str:
    """A string field of a record; ValueError when missing (if required) or not a string."""
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"missing or non-string field {key!r}")
    return value


def _from_query(record: dict) -> Sample:
    """`{"query","response","history":[[q,a],...],"system"}` -> chat."""
    messages = [{"role": "system", "content": record["system"]}] if record.get("system") else []
    history = record.get("history") or []
    if not isinstance(history, list):
        raise ValueError("'history' must be a list of [question, answer] pairs")
    for pair in history:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise ValueError("'history' must be a list of [question, answer] pairs")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    messages += [
        {"role": "user", "content": _text(record, "query")},
        {"role": "assistant", "content": _text(record, "response")},
    ]
    return chat_from_messages(messages)


def normalise(record: object) -> Sample:
    """Turn one record of any supported format into a `Sample`; ValueError names the problem."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    for key in ("conversations", "messages"):
        if key in record:
            return chat_from_messages(record[key])
    if "text" in record:
        return Sample(text=_text(record, "text"))
    if "query" in record or "response" in record:
        return _from_query(record)
    if "instruction" in record:
        prompt = _text(record, "instruction")
        extra = _text(record, "input", required=False)
        prompt = f"{prompt}\n{extra}" if extra else prompt
        return chat_from_messages(
            [{"role": "user", "content": prompt}, {"role": "assistant", "content": _text(record, "output")}]
        )
    if "output" in record or "input" in record:
        prompt, answer = _text(record, "input", required=False), _text(record, "output")
        if not prompt:
            return Sample(text=answer)
        return chat_from_messages([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])
    if "chosen" in record:
        raise ValueError("a preference sample (prompt/chosen/rejected) in supervised data: use it for DPO")
    raise ValueError(f"unrecognised sample format (keys: {', '.join(sorted(record)) or 'none'})")


def iter_samples(path: str | Path, bad: BadLines | None = None) -> Iterator[tuple[int, Sample]]:
    """Yield (line, Sample) for every good record of a file; bad ones raise or are counted by `bad`."""
    bad = bad or BadLines()
    for line, record in iter_records(path, bad):
        try:
            yield line, normalise(record)
        except ValueError as exc:
            bad.report(path, line, str(exc))


def read_samples(path: str | Path, skip_bad: bool = False) -> tuple[list[Sample], BadLines]:
    """All samples of a file, and the bad-line tally. Raises DataError when no sample is left."""
    bad = BadLines(skip_bad=skip_bad)
    samples = [s for _, s in iter_samples(path, bad)]
    if not samples:
        raise DataError(located(str(path), None, "no usable samples"))
    return samples, bad


def _as_messages(value: object, role: str) -> list[dict]:
    """A preference field as a message list (a plain string becomes one message of `role`)."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise ValueError(f"must be a string or a list of {{role, content}} messages, got {type(value).__name__}")


def _preference(record: object) -> dict:
    """One `{"prompt","chosen","rejected"}` record, as strings, or all three as message lists if any is one."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    missing = [k for k in ("prompt", "chosen", "rejected") if k not in record]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)} in a preference sample")
    fields = {k: record[k] for k in ("prompt", "chosen", "rejected")}
    if all(isinstance(v, str) for v in fields.values()):
        return fields
    out = {}
    for key, role in (("prompt", "user"), ("chosen", "assistant"), ("rejected", "assistant")):
        try:
            out[key] = _as_messages(fields[key], role)
        except ValueError as exc:
            raise ValueError(f"{key!r} {exc}") from None
    return out


def read_preference(paths: list[str] | str, base_dir: str | Path = ".", skip_bad: bool = False) -> list[dict]:
    """Read preference pairs: a list of `{"prompt","chosen","rejected"}` for trl.

    Fields stay as given when all three are strings; when any is a message list, all three become message lists
    (a string prompt becomes one user message, a string answer one assistant message). Nothing else is applied.
    """
    bad = BadLines(skip_bad=skip_bad)
    out: list[dict] = []
    for name in [paths] if isinstance(paths, str) else paths:
        path = Path(base_dir) / name
        for line, record in iter_records(path, bad):
            try:
                out.append(_preference(record))
            except ValueError as exc:
                bad.report(path, line, str(exc))
    if not out:
        raise DataError(located(", ".join([paths] if isinstance(paths, str) else paths), None, "no preference samples"))
    return out
