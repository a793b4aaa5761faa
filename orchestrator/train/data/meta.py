"""`meta.json` of an index folder: exactly the keys of DESIGN.md section 4, length buckets counted in tokens."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from orchestrator.errors import DataError, located
from orchestrator.textio import read_text

META_KEYS = ("language", "nlines", "nbytes", "length_distribute", "avg_token_per_line", "data_sample")
BUCKETS = (
    ("less_4k", 4096),
    ("4k-8k", 8192),
    ("8k-16k", 16384),
    ("16k-32k", 32768),
    ("32k-64k", 65536),
    ("64k-128k", 131072),
    ("128k-256k", 262144),
    ("more_256k", None),
)
_EDGES = np.array([limit for _, limit in BUCKETS if limit is not None])


class LengthHistogram:
    """Running counts of sample lengths (in tokens) per bucket."""

    def __init__(self) -> None:
        self.counts = np.zeros(len(BUCKETS), dtype=np.int64)
        self.tokens = 0
        self.lines = 0

    def add(self, lengths: np.ndarray) -> None:
        """Count a batch of sample lengths."""
        self.counts += np.bincount(np.searchsorted(_EDGES, lengths, side="right"), minlength=len(BUCKETS))
        self.tokens += int(lengths.sum())
        self.lines += len(lengths)

    def as_dict(self) -> dict[str, int]:
        """Bucket name -> number of samples."""
        return {name: int(n) for (name, _), n in zip(BUCKETS, self.counts)}


def make_meta(language: str, nbytes: int, hist: LengthHistogram, data_sample: object) -> dict:
    """The meta.json content."""
    return {
        "language": language,
        "nlines": hist.lines,
        "nbytes": nbytes,
        "length_distribute": hist.as_dict(),
        "avg_token_per_line": round(hist.tokens / hist.lines, 2) if hist.lines else 0.0,
        "data_sample": data_sample,
    }


def is_number(value: object) -> bool:
    """An int (not a bool) within 64 bits, or a finite float: what a count or a weight may be."""
    if isinstance(value, bool):
        return False
    return (isinstance(value, int) and abs(value) < 1 << 63) or (isinstance(value, float) and math.isfinite(value))


def read_meta(folder: str | Path) -> dict:
    """Load meta.json of an index folder; DataError (file, line, key) when it is not JSON or a count is not one."""
    path = Path(folder) / "meta.json"
    try:
        meta = json.loads(read_text(path, option=False))
    except json.JSONDecodeError as exc:
        raise DataError(located(str(path), exc.lineno, f"malformed JSON: {exc.msg}")) from None
    except RecursionError:
        raise DataError(located(str(path), None, "malformed JSON: nested too deeply")) from None
    except ValueError as exc:  # e.g. a number too long to convert
        raise DataError(located(str(path), None, f"malformed JSON: {exc}")) from None
    if not isinstance(meta, dict):
        raise DataError(located(str(path), None, "meta.json must be a JSON object"))
    for key in ("nlines", "avg_token_per_line"):
        value = meta.get(key)
        if value is not None and not (is_number(value) and value >= 0 and (key != "nlines" or isinstance(value, int))):
            raise DataError(located(str(path), None, f"{key} must be a non-negative number, not {value!r}"))
    data = Path(folder) / "data.jsonl"
    if meta.get("nlines") and data.is_file() and meta["nlines"] > data.stat().st_size:
        raise DataError(located(str(path), None, f"nlines {meta['nlines']} is more than data.jsonl can hold "
                                                 f"({data.stat().st_size} bytes)"))
    return meta
