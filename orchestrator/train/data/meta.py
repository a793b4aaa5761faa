"""`meta.json` of an index folder: exactly the keys of DESIGN.md section 4, length buckets counted in tokens."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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


def read_meta(folder: str | Path) -> dict:
    """Load meta.json of an index folder."""
    return json.loads((Path(folder) / "meta.json").read_text(encoding="utf-8"))
