"""`orch data convert`: `.txt`, `.csv`, JSON lists and folders of chat exports -> validated JSONL (temp file, then
rename).

`.txt`: one `{"input": "", "output": line}` per non-empty line. A JSON list or CSV: one object per line, after the
entry's field mapping and language filter (`entries.py`). Preference pairs (ours or ms-swift's
`query/response/rejected_response`) are written as `{"prompt","chosen","rejected"}`, for `stage: dpo`. A folder
(walked recursively: the ChatGLM3 guide's per-contact subfolders): `*train.json` files merge into `train.jsonl`,
every other `*.json` into `dev.jsonl`; `split_ratio` moves that share of the training samples (chosen with a seeded
RNG) into `dev.jsonl` as well.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable
from pathlib import Path

from orchestrator.errors import DataError, located
from orchestrator.train.data.entries import DataEntry, Tally, entry_records
from orchestrator.train.data.readers import BadLines, is_preference, normalise, preference_pair


def write_jsonl_atomic(records: Iterable[object], dst: Path) -> int:
    """Write records as JSONL to a temp file beside `dst`, then rename; returns the number written."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def validated_records(entry: DataEntry, bad: BadLines, tally: Tally | None = None) -> list[tuple[int, object]]:
    """(line, record) of every record of an entry that is a sample or a preference pair (as `{"prompt","chosen",
    "rejected"}`), mapped and filtered; bad ones raise or are counted."""
    good = []
    tally = tally if tally is not None else Tally()
    for line, record in entry_records(entry, ".", bad, tally):
        try:
            if is_preference(record):
                record = preference_pair(record)
            else:
                normalise(record)
        except ValueError as exc:
            bad.report(entry.path, line, str(exc))
            continue
        good.append((line, record))
    if not good:
        why = f" ({tally.filtered} filtered out by keep_language {entry.keep_language})" if tally.filtered else ""
        raise DataError(located(entry.path, None, f"no usable samples{why}"))
    return good


def split_off(records: list, ratio: float, seed: int) -> tuple[list, list]:
    """Split records into (kept, held_out) with `round(len * ratio)` held out, chosen by a seeded RNG."""
    if not 0.0 <= ratio < 1.0:
        raise DataError(f"--split-ratio must be in [0, 1), not {ratio}")
    n_out = round(len(records) * ratio)
    chosen = set(random.Random(seed).sample(range(len(records)), n_out))
    kept = [r for i, r in enumerate(records) if i not in chosen]
    return kept, [r for i, r in enumerate(records) if i in chosen]


def convert_file(src: Path, dst: Path, skip_bad: bool = False, entry: DataEntry | None = None,
                 tally: Tally | None = None) -> tuple[int, BadLines]:
    """Convert one `.txt`/`.csv`/JSON/JSONL file into validated JSONL at `dst` (`entry`: mapping and filter)."""
    bad = BadLines(skip_bad=skip_bad)
    records = [r for _, r in validated_records(_with_path(entry, src), bad, tally)]
    return write_jsonl_atomic(records, dst), bad


def _with_path(entry: DataEntry | None, path: Path) -> DataEntry:
    """The reading settings of `entry` applied to `path`."""
    return DataEntry(str(path), entry.columns, entry.keep_language, entry.encoding) if entry else DataEntry(str(path))


def _folder_sources(src: Path) -> tuple[list[Path], list[Path]]:
    """(training files, dev files) of a chat-export folder and its subfolders."""
    files = sorted(p for p in src.rglob("*.json") if p.is_file())
    train = [p for p in files if p.name.endswith("train.json")]
    if not train:
        raise DataError(located(str(src), None, "no *train.json file in the folder or its subfolders"))
    return train, [p for p in files if p not in train]


def convert_to_split(
    src: Path, out_dir: Path, split_ratio: float = 0.0, seed: int = 42, skip_bad: bool = False,
    entry: DataEntry | None = None, tally: Tally | None = None,
) -> tuple[dict[str, int], BadLines]:
    """Convert a file or a chat-export folder into `out_dir/train.jsonl` and `out_dir/dev.jsonl`."""
    bad = BadLines(skip_bad=skip_bad)
    train_files, dev_files = _folder_sources(src) if src.is_dir() else ([src], [])
    if out_dir.resolve() == (src if src.is_dir() else src.parent).resolve():
        raise DataError(located(str(out_dir), None, "the output folder must differ from the input folder"))
    train = [r for p in train_files for _, r in validated_records(_with_path(entry, p), bad, tally)]
    dev = [r for p in dev_files for _, r in validated_records(_with_path(entry, p), bad, tally)]
    train, held_out = split_off(train, split_ratio, seed)
    counts = {
        "train.jsonl": write_jsonl_atomic(train, out_dir / "train.jsonl"),
        "dev.jsonl": write_jsonl_atomic(dev + held_out, out_dir / "dev.jsonl"),
    }
    return counts, bad
