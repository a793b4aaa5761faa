"""Random access to the records of a data file: byte offsets for JSONL (UTF-8 or any encoding whose newline is the
byte 0x0a, e.g. GB18030, Big5), a list for JSON lists, `.txt`, `.csv` and UTF-16/32 files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orchestrator.errors import DataError, located
from orchestrator.textio import codec_of, decode, refusal
from orchestrator.train.data.readers import iter_records, parse_json_line


class RecordFile:
    """`records[i]` -> (line, record) of the i-th non-empty line/element, without loading a JSONL file."""

    def __init__(self, path: Path, encoding: str | None = None) -> None:
        self.path = Path(path)
        self._items: list | None = None
        self._fh = None
        with open(self.path, "rb") as fh:
            self._codec = codec_of(fh.read(4), encoding)
        self._plain_codec = self._codec.replace("-sig", "")
        if self.path.suffix == ".jsonl" and "\n".encode(self._plain_codec) == b"\n":
            self._offsets, self._lines = self._scan(encoding)
        else:
            self._items = list(iter_records(self.path, encoding=encoding))

    def _scan(self, encoding: str | None) -> tuple[np.ndarray, np.ndarray]:
        """Byte offset and line number of every non-empty line (each checked to decode)."""
        offsets, lines, pos = [], [], 0
        with open(self.path, "rb") as fh:
            for n, raw in enumerate(fh, 1):
                try:
                    decode(raw, self._codec if n == 1 else self._plain_codec)
                except UnicodeDecodeError as exc:
                    raise refusal(self.path, n, pos + exc.start, self._codec, encoding) from None
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
            return line, parse_json_line(raw.decode(self._codec if line == 1 else self._plain_codec))
        except ValueError as exc:
            raise DataError(located(str(self.path), line, f"malformed JSON: {getattr(exc, 'msg', exc)}")) from None
