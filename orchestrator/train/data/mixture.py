"""Mixture configs: a JSON list of datasets with `abs_weight` shares, optional repeats and per-sample transforms.

Each entry: `dataset_name`, `task_name`, `abs_weight`, `path` (a JSONL/JSON/.txt file or an index folder),
`transforms` (a Python file defining `transform(data, num_sample, r) -> {"input", "output"}`), `allow_repeat`,
`encoding` (the data file's text encoding when it is not UTF-8, e.g. gb18030), and informational `nlines`,
`ave_tokens_per_line`, `total_tokens` (taken from the index's meta.json when there).
The mixture draws `num_samples` (default: all lines of all datasets) in proportion to `abs_weight`; a dataset that
may not repeat is exhausted at its size instead, which lowers its effective share.
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import DataError, located
from orchestrator.textio import check_encoding, found
from orchestrator.train.data import cache
from orchestrator.train.data.convert import write_jsonl_atomic
from orchestrator.train.data.meta import is_number, read_meta
from orchestrator.train.data.readers import first_char, iter_records
from orchestrator.train.data.records import RecordFile

Transform = Callable[[dict, int, random.Random], dict]


@dataclass
class MixEntry:
    """One dataset of a mixture, paths resolved against the config's folder."""

    dataset_name: str
    task_name: str
    abs_weight: float
    path: Path
    transforms: Path | None
    allow_repeat: bool
    nlines: int
    ave_tokens_per_line: float | None
    line: int
    config_nlines: int | None = None  # what the config said, when it said something
    encoding: str | None = None  # the data file's text encoding (None: UTF-8 or what its BOM says)


@dataclass
class MixPlan:
    """How many samples a dataset contributes, and what that means."""

    entry: MixEntry
    samples: int
    share: float
    epochs: float
    tokens: float | None
    exhausted: bool


def _data_file(path: Path) -> Path:
    """The data file behind a path (an index folder's data.jsonl)."""
    return path / "data.jsonl" if found(path, "dir") else path


def _entry(config: Path, line: int, raw: object, encoding: str | None) -> MixEntry:
    """Validate one config object (`encoding`: the data files' encoding unless the entry names its own)."""
    where = lambda msg: DataError(located(str(config), line, msg))  # noqa: E731
    if not isinstance(raw, dict):
        raise where("each mixture entry must be an object")
    for key in ("dataset_name", "path", "abs_weight"):
        if key not in raw:
            raise where(f"mixture entry is missing {key!r}")
    weight = raw["abs_weight"]
    if not is_number(weight) or weight <= 0:
        raise where(f"{raw['dataset_name']}: abs_weight must be a positive number, not {weight!r}")
    path = config.parent / str(raw["path"])
    if not found(_data_file(path), "file"):
        raise where(f"{raw['dataset_name']}: no such data file {path}")
    transforms = config.parent / raw["transforms"] if raw.get("transforms") else None
    if transforms is not None and not found(transforms, "file"):
        raise where(f"{raw['dataset_name']}: no such transforms file {transforms}")
    if raw.get("encoding") is not None:
        encoding = check_encoding(raw["encoding"], f"{config}:{line}: {raw['dataset_name']}: encoding")
    meta = read_meta(path) if found(path / "meta.json", "file") else {}
    nlines = meta.get("nlines") or len(RecordFile(_data_file(path), encoding))
    ave = meta.get("avg_token_per_line", raw.get("ave_tokens_per_line"))
    if ave is not None and not is_number(ave):
        raise where(f"{raw['dataset_name']}: ave_tokens_per_line must be a number, not {ave!r}")
    said = raw.get("nlines")
    return MixEntry(str(raw["dataset_name"]), str(raw.get("task_name", "")), float(weight), path, transforms,
                    bool(raw.get("allow_repeat", True)), nlines, float(ave) if ave is not None else None, line,
                    said if isinstance(said, int) and not isinstance(said, bool) else None, encoding)


def nlines_warnings(config: str | Path, entries: list[MixEntry]) -> list[str]:
    """One line per dataset whose `nlines` in the config differs from its data (the data's count is used)."""
    return [located(str(config), e.line, f"dataset {e.dataset_name}: nlines {e.config_nlines} in the config, "
                                         f"{e.nlines} in {e.path}; using {e.nlines}")
            for e in entries if e.config_nlines is not None and e.config_nlines != e.nlines]


def check_transforms(entries: list[MixEntry], seed: int, per_dataset: int = 3) -> int:
    """Run each dataset's transform on its first `per_dataset` samples and read the results as samples; a
    failure is a DataError naming the transform, the dataset and the sample. Returns how many were checked."""
    from orchestrator.train.data.readers import normalise

    checked = 0
    for e in entries:
        if e.transforms is None:
            continue
        fn, records = load_transform(e.transforms), RecordFile(_data_file(e.path), e.encoding)
        r = random.Random(f"{seed}:{e.dataset_name}")
        for n in range(min(per_dataset, len(records))):
            line, record = records[n]
            out = _apply(fn, record, n, r, e, line)
            try:
                normalise(out)
            except ValueError as exc:
                at = located(str(_data_file(e.path)), line, "").rstrip(": ")
                raise DataError(located(str(e.transforms), None, f"dataset {e.dataset_name}: the transform's "
                                                                  f"output for sample {at} is not a sample: {exc}"))
            checked += 1
    return checked


def load_mixture(config: str | Path, encoding: str | None = None) -> list[MixEntry]:
    """Read and validate a mixture config (a key given twice in an entry is refused). `encoding`: of the config
    and of its data files (an entry's own `encoding` wins)."""
    config = Path(config)
    if config.suffix != ".json":
        raise DataError(located(str(config), None, "a mixture config is a .json file (a JSON list of datasets)"))
    if first_char(config, encoding) != "[":
        raise DataError(located(str(config), None, "a mixture config must be a JSON list of datasets"))
    entries = [_entry(config, line, raw, encoding)
               for line, raw in iter_records(config, encoding=encoding, unique_keys=True)]
    names = [e.dataset_name for e in entries]
    if len(set(names)) != len(names):
        raise DataError(located(str(config), None, "dataset_name values must be unique"))
    return entries


def plan_mixture(entries: list[MixEntry], num_samples: int | None = None) -> list[MixPlan]:
    """Samples per dataset: `num_samples * abs_weight / sum(abs_weight)`, capped at its size unless it repeats."""
    total = num_samples if num_samples is not None else sum(e.nlines for e in entries)
    weights = sum(e.abs_weight for e in entries)
    wanted = [round(total * e.abs_weight / weights) for e in entries]
    counts = [w if e.allow_repeat else min(w, e.nlines) for e, w in zip(entries, wanted)]
    drawn = sum(counts) or 1
    return [
        MixPlan(e, n, n / drawn, n / e.nlines if e.nlines else 0.0,
                n * e.ave_tokens_per_line if e.ave_tokens_per_line is not None else None, n < w)
        for e, w, n in zip(entries, wanted, counts)
    ]


def load_transform(path: Path) -> Transform:
    """Import `transform` from a Python file."""
    spec = importlib.util.spec_from_file_location(f"orch_transform_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a user file: any failure is a data error
        raise DataError(located(str(path), _tb_line(exc, path), f"cannot load transforms: {exc!r}")) from None
    fn = getattr(module, "transform", None)
    if not callable(fn):
        raise DataError(located(str(path), None, "defines no transform(data, num_sample, r) function"))
    return fn


def _tb_line(exc: BaseException, path: Path) -> int | None:
    """The last line of `path` in an exception's traceback (or its SyntaxError line)."""
    if isinstance(exc, SyntaxError):
        return exc.lineno
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _draw_order(n: int, size: int, allow_repeat: bool, r: random.Random) -> Iterator[int]:
    """`n` record numbers: whole shuffled passes over the dataset, then part of one more."""
    done = 0
    while done < n:
        perm = list(range(size))
        r.shuffle(perm)
        take = perm[: n - done]
        yield from take
        done += len(take)
        if not allow_repeat:
            return


def draw_sequence(plans: list[MixPlan], seed: int) -> list[int]:
    """The dataset number of every sample of the mixture, in the order `iter_mixture` yields them."""
    order = [i for i, p in enumerate(plans) for _ in range(p.samples)]
    random.Random(seed).shuffle(order)
    return order


def sample_names(config: str | Path, seed: int, num_samples: int | None = None,
                 encoding: str | None = None) -> Callable[[int], str]:
    """Names sample N (1-based) of a materialised mixture for error messages: `mix.json: dataset NAME: transformed
    sample N`."""
    entries = load_mixture(config, encoding)
    order = draw_sequence(plan_mixture(entries, num_samples), seed)
    return lambda n: f"{config}: dataset {entries[order[n - 1]].dataset_name}: transformed sample {n}"


def iter_mixture(entries: list[MixEntry], plans: list[MixPlan], seed: int) -> Iterator[tuple[str, dict]]:
    """Yield (dataset_name, record) in a seeded interleaving, each record transformed when a transform is set."""
    order = draw_sequence(plans, seed)
    streams = []
    for i, e in enumerate(entries):
        local = random.Random(f"{seed}:{e.dataset_name}")
        streams.append((RecordFile(_data_file(e.path), e.encoding),
                        _draw_order(plans[i].samples, e.nlines, e.allow_repeat, local),
                        load_transform(e.transforms) if e.transforms else None, local, [0]))
    for i in order:
        records, draws, fn, local, counter = streams[i]
        line, record = records[next(draws)]
        if fn is not None:
            record = _apply(fn, record, counter[0], local, entries[i], line)
        counter[0] += 1
        yield entries[i].dataset_name, record


def _apply(fn: Transform, record: dict, num_sample: int, r: random.Random, entry: MixEntry, line: int) -> dict:
    """Run a user transform; any exception or a non-dict result becomes a DataError naming the sample."""
    try:
        out = fn(record, num_sample, r)
    except Exception as exc:  # a user function: any failure is a data error
        at = located(str(_data_file(entry.path)), line, "")
        raise DataError(located(str(entry.transforms), _tb_line(exc, entry.transforms),
                                f"dataset {entry.dataset_name}: transform raised {exc!r} on sample "
                                f"{at.rstrip(': ')}")) from None
    if not isinstance(out, dict):
        raise DataError(located(str(entry.transforms), None, f"dataset {entry.dataset_name}: transform returned "
                                                              f"{type(out).__name__}, not a dict"))
    return out


def _mixture_key(config: Path, entries: list[MixEntry], seed: int, cache_dir: Path) -> str:
    """Identity of a materialised mixture: config, data file and transform contents, seed (never paths)."""
    digest = hashlib.sha256(config.read_bytes())
    for e in entries:
        digest.update(cache.content_hash(_data_file(e.path), cache_dir).encode())
        if e.transforms:
            digest.update(e.transforms.read_bytes())
        if e.encoding:
            digest.update(e.encoding.encode())
    digest.update(str(seed).encode())
    return digest.hexdigest()[:16]


def materialize_mixture(config: str | Path, cache_dir: Path, seed: int, num_samples: int | None = None,
                        encoding: str | None = None) -> Path:
    """Write the drawn, transformed mixture as JSONL (UTF-8) in `cache_dir` once (file lock); returns its path."""
    config = Path(config)
    entries = load_mixture(config, encoding)
    out = cache_dir / f"mix-{config.stem}-{_mixture_key(config, entries, seed, cache_dir)}-{num_samples}.jsonl"
    with cache.build_lock(out):
        if not out.is_file():
            write_jsonl_atomic((rec for _, rec in iter_mixture(entries, plan_mixture(entries, num_samples), seed)), out)
    return out
