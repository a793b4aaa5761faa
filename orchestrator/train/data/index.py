"""The token index: `data.jsonl` (the source), memory-mapped token/mask arrays and `meta.json`.

Files: `tokens.bin` (uint16 or uint32 ids), `loss_mask.bin` (uint8, 1 where an assistant/pretraining token carries
loss), `offsets.bin` (int64, n+1 token offsets: random access to sample i without reading the rest), `lines.bin`
(int64 source line of each sample), `meta.json` (DESIGN.md section 4) and `orch_index.json` (the build record:
cache key, dtype, counts). The build streams the input in byte-range chunks to a pool of forked workers with a
bounded number of chunks in flight, so memory stays flat; it writes into a temp folder and renames it at the end.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orchestrator.errors import DataError, located
from orchestrator.train.data import cache
from orchestrator.train.data.convert import write_jsonl_atomic
from orchestrator.train.data.encoding import encode_rendered
from orchestrator.train.data.meta import LengthHistogram, make_meta
from orchestrator.train.data.progress import Progress
from orchestrator.textio import copy_as_utf8
from orchestrator.train.data.readers import BadLines, first_char, iter_records, normalise, parse_json_line
from orchestrator.train.data.templates import DEFAULT_TEMPLATE, resolve_template

CHUNK_BYTES = 4 << 20
_ENCODE_BATCH = 512
_WORKER: dict = {}  # tokenizer and template, set before the pool forks


@dataclass
class ChunkResult:
    """What a worker returns for one byte range of data.jsonl."""

    ids: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    rel_lines: np.ndarray  # 0-based line of each sample inside the chunk
    errors: list[tuple[int, str]]
    newlines: int
    end: int  # byte offset where the chunk ends


def _encode_chunk(task: tuple[str, int, int]) -> ChunkResult:
    """Parse, normalise, render and encode the lines in one byte range (runs in a worker)."""
    path, start, end = task
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(end - start)
    tokenizer, template = _WORKER["tokenizer"], _WORKER["template"]
    samples, rendered, rel_lines, errors = [], [], [], []
    for i, raw in enumerate(data.split(b"\n")):
        if not raw.strip():
            continue
        try:
            record = parse_json_line(raw)
        except ValueError as exc:
            errors.append((i, f"malformed JSON: {getattr(exc, 'msg', exc)}"))
            continue
        try:
            sample = normalise(record)
            rendered.append(template.render(sample))
            samples.append(sample)
            rel_lines.append(i)
        except ValueError as exc:
            errors.append((i, str(exc)))
    encoded = []
    for b in range(0, len(samples), _ENCODE_BATCH):
        encoded += encode_rendered(samples[b : b + _ENCODE_BATCH], rendered[b : b + _ENCODE_BATCH], tokenizer,
                                   template)
    lengths = np.array([len(ids) for ids, _ in encoded], dtype=np.int64)
    dtype = _WORKER["dtype"]  # narrow before the ids cross the pipe
    return ChunkResult(
        ids=np.concatenate([ids for ids, _ in encoded]).astype(dtype) if encoded else np.zeros(0, dtype),
        mask=np.concatenate([m for _, m in encoded]) if encoded else np.zeros(0, np.uint8),
        lengths=lengths,
        rel_lines=np.array(rel_lines, dtype=np.int64),
        errors=errors,
        newlines=data.count(b"\n"),
        end=end,
    )


def _chunks(path: Path, chunk_bytes: int) -> list[tuple[str, int, int]]:
    """Byte ranges of about `chunk_bytes` that end just after a newline."""
    size, ranges, pos = path.stat().st_size, [], 0
    with open(path, "rb") as fh:
        while pos < size:
            fh.seek(min(pos + chunk_bytes, size))
            fh.readline()
            end = min(fh.tell(), size)
            ranges.append((str(path), pos, end))
            pos = end
    return ranges


def _worker_init() -> None:
    """Keep each worker's tokenizer single-threaded: the pool is the parallelism."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def _run_chunks(tasks: list, workers: int):
    """Yield chunk results in order, with at most 2 x workers chunks in flight."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(_encode_chunk, tasks)
        return
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers, initializer=_worker_init) as pool:
        pending: deque = deque()
        todo = iter(tasks)
        for task in todo:
            pending.append(pool.apply_async(_encode_chunk, (task,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _prepare_source(src: Path, tmp: Path, encoding: str | None) -> list[int] | None:
    """Put the source into `tmp/data.jsonl` as UTF-8 (checked, or decoded from `encoding` / its BOM's); returns
    the original line of each data line for non-JSONL input."""
    if src.suffix == ".jsonl":
        copy_as_utf8(src, tmp / "data.jsonl", encoding)
        return None
    line_map: list[int] = []

    def records():
        for line, record in iter_records(src, encoding=encoding):
            line_map.append(line)
            yield record

    write_jsonl_atomic(records(), tmp / "data.jsonl")
    return line_map


def _first_record(path: Path) -> object:
    """The first record of a JSONL file (for meta.json's data_sample)."""
    with open(path, encoding="utf-8") as fh:
        for raw in fh:
            if raw.strip():
                try:
                    return json.loads(raw)
                except ValueError:
                    return raw.strip()
    return None


def _write_index(src: Path, tmp: Path, tokenizer, template, language: str, workers: int, bad: BadLines,
                 chunk_bytes: int, describe: Callable[[int], str] | None, label: str, encoding: str | None) -> dict:
    """Fill `tmp` with data.jsonl, the token arrays and meta.json; returns build counts."""
    line_map = _prepare_source(src, tmp, encoding)
    data = tmp / "data.jsonl"
    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max else np.uint32
    hist, line_base, offset = LengthHistogram(), 1, 0
    _WORKER.update(tokenizer=tokenizer, template=template, dtype=dtype)
    with open(tmp / "tokens.bin", "wb") as f_ids, open(tmp / "loss_mask.bin", "wb") as f_mask, \
            open(tmp / "offsets.bin", "wb") as f_off, open(tmp / "lines.bin", "wb") as f_lines:
        f_off.write(np.zeros(1, np.int64).tobytes())
        progress = Progress(label, data.stat().st_size)
        for result in _run_chunks(_chunks(data, chunk_bytes), workers):
            for rel, problem in result.errors:
                line = line_base + rel
                if describe is not None:
                    bad.report(describe(line), None, problem)
                else:
                    bad.report(src, line_map[line - 1] if line_map else line, problem)
            f_ids.write(result.ids.tobytes())
            f_mask.write(result.mask.tobytes())
            f_off.write((offset + np.cumsum(result.lengths)).tobytes())
            f_lines.write((line_base + result.rel_lines).tobytes())
            offset += int(result.lengths.sum())
            hist.add(result.lengths)
            line_base += result.newlines
            progress.update(result.end)
    if hist.lines == 0:
        raise DataError(located(str(src), None, "no usable samples"))
    meta = make_meta(language, data.stat().st_size, hist, _first_record(data))
    (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
    return {"dtype": np.dtype(dtype).name, "samples": hist.lines, "tokens": offset, "skipped_bad": bad.count}


def _check_output(src: Path, out: Path) -> None:
    """The output folder must not be (or contain) the input's folder."""
    if out.resolve() == src.resolve().parent or out.resolve() == src.resolve():
        raise DataError(located(str(out), None, f"the output folder must differ from the input folder of {src}"))


def build_index(src: str | Path, out: str | Path, tokenizer, template: object = DEFAULT_TEMPLATE,
                language: str = "zh", workers: int | None = None, skip_bad: bool = False,
                chunk_bytes: int = CHUNK_BYTES, describe: Callable[[int], str] | None = None,
                input_sha: str | None = None, label: str | None = None, request: str | None = None,
                encoding: str | None = None) -> dict:
    """Build (or reuse) the token index of `src` in `out`; returns the build record (with `cached: bool`).

    `template`: a template value or a resolved `Template` (templates.py). Cached by a hash of the input content,
    the tokenizer and the settings (the template's key among them); built once under a file lock. `describe`
    names line N of `src` in error messages instead of `src:N` (a materialised mixture names the dataset).
    `input_sha`: the content hash of `src` when the caller has it; `label`: what the progress bar names;
    `request`: a key of what was asked, before the tokenizer loaded (`orch data index` checks it without loading);
    `encoding`: the source's text encoding when it is not UTF-8 (data.jsonl is always written as UTF-8).
    """
    src, out = Path(src), Path(out)
    if not src.is_file():
        raise DataError(located(str(src), None, "no such file"))
    if not first_char(src, encoding):
        raise DataError(located(str(src), None, "the file is empty"))
    _check_output(src, out)
    template = resolve_template(template, tokenizer)
    settings = {"tokenizer": cache.tokenizer_hash(tokenizer), "template": template.key, "language": language,
                "skip_bad": skip_bad, **({"encoding": encoding} if encoding else {})}
    with cache.build_lock(out):
        previous = cache.read_record(out)
        sha = input_sha or cache.input_hash(src, previous)
        key = cache.settings_key(input=sha, **settings)
        if previous and previous.get("key") == key and (out / "meta.json").is_file():
            if request and previous.get("request") != request:
                previous["request"] = request
                (out / "orch_index.json").write_text(json.dumps(previous, indent=2))
            return {**previous, "cached": True}
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            bad = BadLines(skip_bad=skip_bad)
            counts = _write_index(src, tmp, tokenizer, template, language, workers or _cpu_count(), bad,
                                  chunk_bytes, describe, label or src.name, encoding)
            record = {"key": key, "input_sha256": sha, "input_stat": cache.stat_id(src), **settings, **counts,
                      "bad_examples": bad.examples, "request": request}
            (tmp / "orch_index.json").write_text(json.dumps(record, indent=2))
            _replace_dir(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {**record, "cached": False}


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished temp folder into place, replacing a stale index."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp, out)


def _cpu_count() -> int:
    """CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class TokenIndex:
    """Read-only, memory-mapped access to a built index: `index[i]` -> (ids, loss_mask) numpy arrays."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        record = cache.read_record(self.folder)
        if record is None:
            raise DataError(located(str(self.folder), None, "not a token index (no orch_index.json)"))
        self.record = record
        self.offsets = np.fromfile(self.folder / "offsets.bin", dtype=np.int64)
        self.tokens = _memmap(self.folder / "tokens.bin", record["dtype"])
        self.mask = _memmap(self.folder / "loss_mask.bin", "uint8")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.offsets[i], self.offsets[i + 1]
        return np.asarray(self.tokens[start:end], dtype=np.int64), np.asarray(self.mask[start:end])

    @property
    def lengths(self) -> np.ndarray:
        """Token count of every sample."""
        return np.diff(self.offsets)


def _memmap(path: Path, dtype: str) -> np.ndarray:
    """A read-only memmap (an empty array for an empty file, which np.memmap refuses)."""
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")
