"""Random access to the records of a data file: byte offsets for JSONL, a list for JSON lists and `.txt`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from orchestrator.errors import DataError, located
from orchestrator.train.data.readers import iter_records


class RecordFile:
    """`records[i]` -> (line, record) of the i-th non-empty line/element, without loading a JSONL file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._items: list | None = None
        self._fh = None
        if self.path.suffix == ".jsonl":
            self._offsets, self._lines = self._scan()
        else:
            self._items = list(iter_records(self.path))

    def _scan(self) -> tuple[np.ndarray, np.ndarray]:
        """Byte offset and line number of every non-empty line."""
        offsets, lines, pos = [], [], 0
        with open(self.path, "rb") as fh:
            for n, raw in enumerate(fh, 1):
                if raw.strip():
                    offsets.append(pos)
                    lines.append(n)
                pos += len(raw)
        if not offsets:
            raise DataError(located(str(self.path), None, "the file is empty"))
        return np.array(offsets, dtype=np.int64), np.array(lines, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._items) if self._items is not None else len(self._offsets)

    def __getitem__(self, i: int) -> tuple[int, object]:
        if self._items is not None:
            return self._items[i]
        if self._fh is None:
            self._fh = open(self.path, "rb")  # noqa: SIM115 - kept open for repeated random reads
        self._fh.seek(int(self._offsets[i]))
        raw = self._fh.readline()
        line = int(self._lines[i])
        try:
            return line, json.loads(raw)
        except ValueError as exc:
            raise DataError(located(str(self.path), line, f"malformed JSON: {getattr(exc, 'msg', exc)}")) from None
