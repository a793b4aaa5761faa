"""Readers for every format of DESIGN.md section 4, normalised to `Sample` (or preference dicts).

A file is JSONL (one object per line) or one JSON list; `.txt` is one pretraining sample per non-empty line;
`.csv` is one record per row, its header row naming the fields (any format below, by column name).
Every problem is reported as `file:line: problem`; with `skip_bad` bad lines are counted instead. Files are UTF-8
(a BOM may say UTF-8/16/32) unless an entry names its encoding (`orchestrator.textio`); a CSV row or a JSON list
element is reported at the line it starts on.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import DataError, located
from orchestrator.textio import found, iter_lines, read_text
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


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object's pairs as a dict; ValueError on a key given twice (for configs, where the later one would
    silently win)."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r} (given twice in one object; the later would silently win)")
        out[key] = value
    return out


def _iter_json_list(path: Path, text: str, unique_keys: bool = False) -> Iterator[tuple[int, object]]:
    """Yield (line, element) of a JSON list, with the line each element starts on."""
    decoder = json.JSONDecoder(object_pairs_hook=_unique_keys if unique_keys else None)
    pos = text.index("[") + 1
    cache = [0, 1]
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise DataError(located(str(path), _line_of(text, pos, cache), "JSON list is not closed with ']'"))
        if text[pos] == "]":
            if text[pos + 1:].strip():
                raise DataError(located(str(path), _line_of(text, pos, cache), "extra data after the JSON list"))
            return
        line = _line_of(text, pos, cache)
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataError(located(str(path), _line_of(text, exc.pos, cache), f"malformed JSON: {exc.msg}")) from None
        except ValueError as exc:  # a duplicate key
            raise DataError(located(str(path), line, str(exc))) from None
        except RecursionError:
            raise DataError(located(str(path), line, TOO_DEEP)) from None
        yield line, value


TOO_DEEP = "JSON nested too deeply"


def parse_json_line(raw: str | bytes) -> object:
    """One JSONL line; ValueError (with `.msg` for malformed JSON) also for nesting too deep to parse."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError(TOO_DEEP) from None


def first_char(path: Path, encoding: str | None = None) -> str:
    """The first non-whitespace character of a file ('' when the file is blank)."""
    for _, text in iter_lines(path, encoding):
        stripped = text.strip()
        if stripped:
            return stripped[0]
    return ""


def _csv_problem(exc: csv.Error) -> str:
    """csv's message in a user's words."""
    if "unexpected end of data" in str(exc):
        return "unterminated quoted field (its closing \" is missing, so the field runs to the end of the file)"
    return f"malformed CSV: {exc}"


def _iter_csv(path: Path, bad: BadLines, encoding: str | None) -> Iterator[tuple[int, dict]]:
    """(line, row) of a CSV file whose header row names the fields; a row with more or fewer cells than the
    header goes to `bad`. A row is reported at the line it starts on (a quoted cell may span lines)."""
    reader = csv.DictReader((text for _, text in iter_lines(path, encoding)), strict=True)
    start = 1
    try:
        fields = reader.fieldnames
        start = reader.line_num + 1
        for row in reader:
            cells = [v for k, v in row.items() if k is not None] + row.get(None, [])
            if any((v or "").strip() for v in cells):
                if None in row or None in row.values():
                    bad.report(path, start, f"{len([v for v in cells if v is not None])} cell(s), the header "
                                            f"has {len(fields)} ({', '.join(fields)})")
                else:
                    yield start, dict(row)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(located(str(path), start, _csv_problem(exc))) from None


def iter_records(path: str | Path, bad: BadLines | None = None, encoding: str | None = None,
                 unique_keys: bool = False) -> Iterator[tuple[int, object]]:
    """Yield (line, record) from a JSONL file, a JSON list file, a `.csv` file (a dict per row, keyed by the
    header) or a `.txt` file (records `{"input": "", "output": line}`). `encoding`: the file's text encoding
    (default UTF-8, or what its BOM says, see `orchestrator.textio`); `unique_keys`: refuse an object with a key
    given twice (JSON lists: configs)."""
    path = Path(path)
    bad = bad or BadLines()
    if not found(path, "file"):
        raise DataError(located(str(path), None, "no such file"))
    first = first_char(path, encoding)
    if not first:
        raise DataError(located(str(path), None, "the file is empty"))
    if path.suffix.lower() == ".txt":
        for n, text in iter_lines(path, encoding):
            if text.strip():
                yield n, {"input": "", "output": text.rstrip("\r\n")}
        return
    if path.suffix.lower() == ".csv":
        yield from _iter_csv(path, bad, encoding)
        return
    if first == "[":
        yield from _iter_json_list(path, read_text(path, encoding), unique_keys)
        return
    for n, text in iter_lines(path, encoding):
        if not text.strip():
            continue
        try:
            yield n, parse_json_line(text)
        except json.JSONDecodeError as exc:
            bad.report(path, n, f"malformed JSON: {exc.msg} (column {exc.colno})")
        except ValueError as exc:
            bad.report(path, n, str(exc))


PREFERENCE_IN_SFT = ("a preference sample (chosen/rejected or rejected_response) in supervised data: train it with "
                     "stage: dpo (sft would drop the rejected answer), or remove the rejected field")


def is_preference(record: object) -> bool:
    """A preference pair: ours `{"prompt","chosen","rejected"}` or ms-swift's `{"query","response",
    "rejected_response"}`."""
    return isinstance(record, dict) and ("rejected_response" in record or ("chosen" in record
                                                                           and "rejected" in record))


def _text(record: dict, key: str, required: bool = True) -> str:
    """A string field of a record; ValueError when missing (if required) or not a string."""
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"missing or non-string field {key!r}")
    return value


def _query_messages(record: dict) -> list[dict]:
    """System, history and query of a `{"query","history","system"}` record as messages (ending with the user)."""
    messages = [{"role": "system", "content": record["system"]}] if record.get("system") else []
    history = record.get("history") or []
    if not isinstance(history, list):
        raise ValueError("'history' must be a list of [question, answer] pairs")
    for pair in history:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise ValueError("'history' must be a list of [question, answer] pairs")
        messages += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    return messages + [{"role": "user", "content": _text(record, "query")}]


def _from_query(record: dict) -> Sample:
    """`{"query","response","history":[[q,a],...],"system"}` -> chat."""
    return chat_from_messages(_query_messages(record) + [{"role": "assistant", "content": _text(record, "response")}])


def normalise(record: object) -> Sample:
    """Turn one record of any supported format into a `Sample`; ValueError names the problem."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    for key in ("conversations", "messages"):
        if key in record:
            return chat_from_messages(record[key])
    if is_preference(record):
        raise ValueError(PREFERENCE_IN_SFT)
    if "text" in record:
        return Sample(text=_text(record, "text"))
    if "query" not in record and "response" in record:
        return Sample(text=_text(record, "response"))  # ms-swift's pretraining rows
    if "query" in record:
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
    raise ValueError(f"unrecognised sample format (keys: {', '.join(sorted(record)) or 'none'})")


def iter_samples(path: str | Path, bad: BadLines | None = None,
                 encoding: str | None = None) -> Iterator[tuple[int, Sample]]:
    """Yield (line, Sample) for every good record of a file; bad ones raise or are counted by `bad`."""
    bad = bad or BadLines()
    for line, record in iter_records(path, bad, encoding):
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


def _swift_preference(record: dict) -> dict:
    """ms-swift's `{"query","response","rejected_response","history","system"}` as our preference pair: strings
    without history or system, else the prompt as messages (system, history turns, query)."""
    chosen, rejected = _text(record, "response"), _text(record, "rejected_response")
    if not record.get("history") and not record.get("system"):
        return {"prompt": _text(record, "query"), "chosen": chosen, "rejected": rejected}
    return {"prompt": _query_messages(record), "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


def preference_pair(record: object) -> dict:
    """One preference record (ours or ms-swift's), as strings, or all three as message lists if any is one."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if "rejected_response" in record:
        return _swift_preference(record)
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
