"""Cut generated text at the first stop string, without ever emitting text that a stop string might still claim."""

from __future__ import annotations


class StopMatcher:
    """Feed text pieces with `feed`; it returns what is safe to show; `stopped` turns true at a stop string."""

    def __init__(self, stops: list[str] | tuple[str, ...]) -> None:
        self.stops = [s for s in stops if s]
        self.stopped = False
        self._held = ""

    def _held_back(self, text: str) -> int:
        """Length of the longest end of `text` that starts some stop string (it may complete later)."""
        for size in range(min(len(text), max(map(len, self.stops)) - 1), 0, -1):
            tail = text[-size:]
            if any(stop.startswith(tail) for stop in self.stops):
                return size
        return 0

    def feed(self, text: str) -> str:
        """Add a piece of text; return the part that can be emitted now."""
        if self.stopped:
            return ""
        if not self.stops:
            return text
        buf = self._held + text
        hits = [i for i in (buf.find(stop) for stop in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            self._held = ""
            return buf[: min(hits)]
        keep = self._held_back(buf)
        self._held = buf[len(buf) - keep :]
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        """Generation ended without a stop string: release the held-back text."""
        out, self._held = ("" if self.stopped else self._held), ""
        return out
