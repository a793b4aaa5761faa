"""Token ids and loss masks from rendered pieces (`templates.Template.render`).

Fast tokenizers (with a `backend_tokenizer`): the whole text of a batch in one call, masks from token offsets (as
transformers computes `return_assistant_tokens_mask`); chatml/qwen first read masks off the ChatML special tokens,
which is cheaper, and fall back to offsets for any sample that path cannot vouch for (a token straddling a span
boundary, such as BPE's " Paris" after "Assistant:", carries loss). Slow tokenizers
(SentencePiece or custom code, e.g. ChatGLM3's with trust_remote_code): piece by piece with `plain_ids` (never
asking the tokenizer to pad: ChatGLM3's pads only on the left and, from transformers 4.45 on, fails whenever asked
to pad at all), each control token mapped to its single id, each piece's tokens masked by its loss flag.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from orchestrator.errors import DataError
from orchestrator.train.data.formats import CONTENT, SPECIAL, Piece, split_markers
from orchestrator.train.data.samples import Sample
from orchestrator.train.data.templates import DEFAULT_TEMPLATE, Template, resolve_template, single_id

IGNORE_INDEX = -100
Span = tuple[int, int]
Encoded = tuple[np.ndarray, np.ndarray]


def text_and_spans(pieces: list[Piece]) -> tuple[str, list[Span]]:
    """The rendered text and its loss spans (adjacent loss pieces merged)."""
    spans: list[Span] = []
    pos = 0
    for text, loss, _ in pieces:
        if loss:
            if spans and spans[-1][1] == pos:
                spans[-1] = (spans[-1][0], pos + len(text))
            else:
                spans.append((pos, pos + len(text)))
        pos += len(text)
    return "".join(text for text, _, _ in pieces), spans


def _token_at(encoding, char: int, step: int, stop: int) -> int | None:
    """The token covering `char`, looking `step`-wise until `stop` when a character maps to no token."""
    while char != stop:
        token = encoding.char_to_token(char)
        if token is not None:
            return token
        char += step
    return None


def _mask(encoding, spans: list[Span]) -> np.ndarray:
    """1 for tokens inside a loss span, else 0."""
    mask = np.zeros(len(encoding.ids), dtype=np.uint8)
    for start, end in spans:
        first = _token_at(encoding, start, 1, end)
        last = _token_at(encoding, end - 1, -1, start - 1)
        if first is not None and last is not None:
            mask[first : last + 1] = 1
    return mask


def _chatml_ids(tokenizer) -> tuple[int, int, list[int]] | None:
    """(<|im_start|> id, <|im_end|> id, ids of "assistant\\n") when the tokenizer has ChatML special tokens."""
    cached = getattr(tokenizer, "_orch_chatml", False)
    if cached is not False:
        return cached
    backend = tokenizer.backend_tokenizer
    start, end = backend.token_to_id("<|im_start|>"), backend.token_to_id("<|im_end|>")
    found = None
    if start is not None and end is not None:
        found = (start, end, backend.encode("assistant\n", add_special_tokens=False).ids)
    tokenizer._orch_chatml = found
    return found


def _chatml_mask(ids: np.ndarray, turns: int, marks: tuple[int, int, list[int]]) -> np.ndarray | None:
    """Loss mask found from the ChatML special tokens alone, or None when it cannot be trusted.

    After `<|im_start|>`, the ids of `assistant\\n` followed by content mean the bytes split exactly there, so
    loss runs from the next token through the next `<|im_end|>`. When the content's first characters merged
    with the header's newline, or the number of assistant turns found differs, the caller uses offsets instead.
    """
    start, end, header = marks
    mask = np.zeros(len(ids), dtype=np.uint8)
    ends = np.flatnonzero(ids == end)
    found = 0
    for s in np.flatnonzero(ids == start).tolist():
        first = s + 1 + len(header)
        if ids[s + 1 : first].tolist() != header:
            continue
        k = np.searchsorted(ends, first)
        if k == len(ends):
            return None
        mask[first : ends[k] + 1] = 1
        found += 1
    return mask if found == turns else None


def _encode_chatml(samples: Sequence[Sample], tokenizer, texts: list[str]) -> list[Encoded | None]:
    """ChatML fast path: ids without offsets (cheaper), masks from special tokens; None where not usable."""
    marks = _chatml_ids(tokenizer)
    batch = getattr(tokenizer.backend_tokenizer, "encode_batch_fast", None)
    if marks is None or batch is None:
        return [None] * len(samples)
    out: list[Encoded | None] = []
    for sample, enc in zip(samples, batch(texts, add_special_tokens=False)):
        ids = np.asarray(enc.ids, dtype=np.int64)
        if sample.text is not None:
            out.append((ids, np.ones(len(ids), dtype=np.uint8)))
            continue
        mask = _chatml_mask(ids, sum(role == "assistant" for role, _ in sample.turns), marks)
        out.append(None if mask is None else (ids, mask))
    return out


def _encode_fast(samples: Sequence[Sample], rendered: list[list[Piece]], tokenizer,
                 template: Template) -> list[Encoded]:
    """One batch call of the fast tokenizer; masks from special tokens (chatml) or offsets."""
    texts = ["".join([piece[0] for piece in pieces]) for pieces in rendered]
    results = _encode_chatml(samples, tokenizer, texts) if template.chatml else [None] * len(samples)
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
        encodings = tokenizer.backend_tokenizer.encode_batch([texts[i] for i in todo], add_special_tokens=False)
        for i, enc in zip(todo, encodings):
            results[i] = (np.asarray(enc.ids, dtype=np.int64), _mask(enc, text_and_spans(rendered[i])[1]))
    return results


def plain_ids(tokenizer, text: str) -> list[int]:
    """Token ids of `text`: no special tokens added, no padding, no attention mask asked for."""
    return tokenizer.encode(text, add_special_tokens=False, return_attention_mask=False)


def _special_ids(tokenizer, token: str) -> list[int]:
    """A control token's single id, or its text encoding when the tokenizer has no such token (memoised)."""
    cache = getattr(tokenizer, "_orch_special_ids", None)
    if cache is None:
        cache = {}
        try:
            tokenizer._orch_special_ids = cache
        except AttributeError:
            pass
    if token not in cache:
        tid = single_id(tokenizer, token)
        cache[token] = [tid] if tid is not None else plain_ids(tokenizer, token)
    return cache[token]


def _piece_ids(tokenizer, text: str, kind: int) -> list[int]:
    """Token ids of one piece (see formats.py for the kinds)."""
    if kind == CONTENT:
        return plain_ids(tokenizer, text)
    if kind == SPECIAL:
        return _special_ids(tokenizer, text)
    ids: list[int] = []
    for part, is_marker in split_markers(text):
        ids += _special_ids(tokenizer, part) if is_marker else plain_ids(tokenizer, part)
    return ids


def _encode_pieces(pieces: list[Piece], tokenizer) -> Encoded:
    """Segment-by-segment encoding for tokenizers without a fast backend."""
    ids: list[int] = []
    mask: list[int] = []
    for text, loss, kind in pieces:
        piece_ids = _piece_ids(tokenizer, text, kind)
        ids += piece_ids
        mask += [int(loss)] * len(piece_ids)
    return np.asarray(ids, dtype=np.int64), np.asarray(mask, dtype=np.uint8)


def encode_rendered(samples: Sequence[Sample], rendered: list[list[Piece]], tokenizer,
                    template: Template) -> list[Encoded]:
    """(token ids as int64, loss mask as uint8) per sample, from its rendered pieces."""
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        return [_encode_pieces(pieces, tokenizer) for pieces in rendered]
    return _encode_fast(samples, rendered, tokenizer, template)


def encode_many(samples: Sequence[Sample], tokenizer, template: object) -> list[Encoded]:
    """Render and encode samples in one batch; a sample the template refuses raises ValueError."""
    template = resolve_template(template, tokenizer)
    return encode_rendered(samples, [template.render(s) for s in samples], tokenizer, template)


def labels_from_mask(ids: Sequence[int], mask: Sequence[int], stage: str = "sft") -> list[int]:
    """Labels: the ids where the mask is set (everywhere for stage `pt`), IGNORE_INDEX elsewhere."""
    if stage == "pt":
        return [int(t) for t in ids]
    return [int(t) if m else IGNORE_INDEX for t, m in zip(ids, mask)]


def encode(sample: Sample, tokenizer, template: object = DEFAULT_TEMPLATE,
           stage: str = "sft") -> tuple[list[int], list[int]]:
    """Encode one sample: (input_ids, labels) with labels -100 outside assistant turns (nowhere for `pt`)."""
    try:
        ids, mask = encode_many([sample], tokenizer, template)[0]
    except ValueError as exc:
        raise DataError(str(exc)) from None
    return [int(t) for t in ids], labels_from_mask(ids, mask, stage)
