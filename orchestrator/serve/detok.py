"""Turn a growing list of token ids into text pieces, one token at a time, without splitting characters.

Decoding each token alone breaks byte-level BPE (a Chinese character spans tokens) and loses the spaces some
tokenizers add between words. Each step decodes a short window that starts at the previous piece's first token (a
character boundary that gives the new tokens their context) and emits what the window adds, up to any trailing
incomplete character (U+FFFD), which waits for the bytes that complete it. A window that never completes (a model
emitting stray bytes) is closed after a few tokens, so nothing is held back for long and decoding stays cheap.
"""

from __future__ import annotations

from typing import Any

_INCOMPLETE = "\ufffd"
_MAX_WINDOW = 8  # a UTF-8 character has at most 4 bytes, so a window this long is not waiting for one


class IncrementalDecoder:
    """Feed token ids with `push`; it returns the new text they complete (possibly empty); `flush` at the end."""

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._start = 0  # first token of the current window
        self._shown = 0  # characters of the window's text already returned
        self._boundary = 0  # tokens before this index decoded to whole characters, all returned

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes."""
        self._ids.append(token_id)
        text = self._decode(self._ids[self._start :])
        if text.endswith(_INCOMPLETE) and len(self._ids) - self._start <= _MAX_WINDOW:
            stable = text.rstrip(_INCOMPLETE)  # wait for the bytes that complete the last character
            piece = stable[self._shown :]
            self._shown = max(self._shown, len(stable))
            return piece
        piece = text[self._shown :]
        if text.endswith(_INCOMPLETE):  # stray bytes that will never complete: shown as U+FFFD, window closed
            self._start = self._boundary = len(self._ids)
            self._shown = 0
        else:  # the next window starts where this piece's tokens began: a character boundary
            self._start, self._boundary = self._boundary, len(self._ids)
            self._shown = len(self._decode(self._ids[self._start :]))
        return piece

    def flush(self) -> str:
        """Return whatever is still held back (an incomplete character at the very end stays as U+FFFD)."""
        text = self._decode(self._ids[self._start :])
        piece = text[self._shown :]
        self._start = self._boundary = len(self._ids)
        self._shown = 0
        return piece
