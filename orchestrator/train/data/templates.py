"""Chat templates and encoding with loss masks.

A template renders a `Sample` to text plus the character spans that carry loss: every assistant turn's content
and its end-of-turn token (a model that never learns to stop is the most common complaint), nothing else.
Tokens are then mapped to spans through the tokenizer's offsets, the way transformers computes
`return_assistant_tokens_mask`. Plain text (pretraining) is followed by the EOS token and has loss everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from orchestrator.errors import DataError
from orchestrator.train.data.samples import Sample

IGNORE_INDEX = -100
Span = tuple[int, int]


def render_chatml(sample: Sample) -> tuple[str, list[Span]]:
    """ChatML: `<|im_start|>role\\ncontent<|im_end|>\\n` per turn; loss on assistant content + `<|im_end|>`."""
    parts: list[str] = []
    spans: list[Span] = []
    pos = 0

    def add(piece: str, loss: bool = False) -> None:
        nonlocal pos
        parts.append(piece)
        if loss:
            spans.append((pos, pos + len(piece)))
        pos += len(piece)

    for msg in sample.messages():
        add(f"<|im_start|>{msg['role']}\n")
        add(msg["content"] + "<|im_end|>", loss=msg["role"] == "assistant")
        add("\n")
    return "".join(parts), spans


BUILTIN_TEMPLATES: dict[str, Callable[[Sample], tuple[str, list[Span]]]] = {"chatml": render_chatml}
TEMPLATE_NAMES = ("auto", "tokenizer", *BUILTIN_TEMPLATES)


def resolve_template(name: str, tokenizer) -> str:
    """`auto` -> `tokenizer` when the tokenizer has a chat_template, else `chatml`; unknown names raise DataError."""
    if name == "auto":
        return "tokenizer" if getattr(tokenizer, "chat_template", None) else "chatml"
    if name == "tokenizer" and not getattr(tokenizer, "chat_template", None):
        raise DataError("template 'tokenizer' asked for, but the tokenizer has no chat_template")
    if name not in TEMPLATE_NAMES:
        raise DataError(f"unknown template {name!r}; known: {', '.join(TEMPLATE_NAMES)}")
    return name


def render_with_tokenizer(sample: Sample, tokenizer) -> tuple[str, list[Span]]:
    """Render with the tokenizer's own chat_template; assistant spans found by rendering growing prefixes.

    The span of assistant turn i is what `messages[:i+1]` adds to `messages[:i]` + generation prompt, trailing
    whitespace excluded. Templates that rewrite earlier turns cannot be masked this way: DataError.
    """
    messages = sample.messages()

    def render(msgs: list[dict], gen: bool) -> str:
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    full = render(messages, False)
    spans: list[Span] = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        prompt, upto = render(messages[:i], True), render(messages[: i + 1], False)
        if not (upto.startswith(prompt) and full.startswith(upto)):
            raise DataError(
                "the tokenizer's chat_template rewrites earlier turns, so assistant tokens cannot be masked "
                "reliably; choose a built-in template (--template chatml)"
            )
        spans.append((len(prompt), len(upto.rstrip())))
    return full, spans


def render(sample: Sample, tokenizer, template: str) -> tuple[str, list[Span]]:
    """Text and loss spans of a sample under a resolved template name (plain text: all of it + EOS)."""
    if sample.text is not None:
        text = sample.text + (tokenizer.eos_token or "")
        return text, [(0, len(text))]
    if template == "tokenizer":
        return render_with_tokenizer(sample, tokenizer)
    return BUILTIN_TEMPLATES[template](sample)


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


def _encode_fast(samples: Sequence[Sample], tokenizer, texts: list[str]) -> list[np.ndarray | None]:
    """ChatML fast path: ids without offsets (cheaper), masks from special tokens; None where not usable."""
    marks = _chatml_ids(tokenizer)
    batch = getattr(tokenizer.backend_tokenizer, "encode_batch_fast", None)
    if marks is None or batch is None:
        return [None] * len(samples)
    out: list[np.ndarray | None] = []
    for sample, enc in zip(samples, batch(texts, add_special_tokens=False)):
        ids = np.asarray(enc.ids, dtype=np.int64)
        if sample.text is not None:
            out.append((ids, np.ones(len(ids), dtype=np.uint8)))
            continue
        mask = _chatml_mask(ids, sum(role == "assistant" for role, _ in sample.turns), marks)
        out.append(None if mask is None else (ids, mask))
    return out


def encode_many(samples: Sequence[Sample], tokenizer, template: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Encode samples in one tokenizer batch: (token ids as int64, loss mask as uint8) per sample.

    Masks come from token offsets (as transformers computes assistant masks); for the built-in ChatML template a
    faster path reads them off the special tokens and falls back to offsets for any sample it cannot vouch for.
    """
    rendered = [render(s, tokenizer, template) for s in samples]
    texts = [text for text, _ in rendered]
    results = _encode_fast(samples, tokenizer, texts) if template == "chatml" else [None] * len(samples)
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
        encodings = tokenizer.backend_tokenizer.encode_batch([texts[i] for i in todo], add_special_tokens=False)
        for i, enc in zip(todo, encodings):
            results[i] = (np.asarray(enc.ids, dtype=np.int64), _mask(enc, rendered[i][1]))
    return results


def labels_from_mask(ids: Sequence[int], mask: Sequence[int], stage: str = "sft") -> list[int]:
    """Labels: the ids where the mask is set (everywhere for stage `pt`), IGNORE_INDEX elsewhere."""
    if stage == "pt":
        return [int(t) for t in ids]
    return [int(t) if m else IGNORE_INDEX for t, m in zip(ids, mask)]


def encode(sample: Sample, tokenizer, template: str = "chatml", stage: str = "sft") -> tuple[list[int], list[int]]:
    """Encode one sample: (input_ids, labels) with labels -100 outside assistant turns (nowhere for `pt`)."""
    ids, mask = encode_many([sample], tokenizer, resolve_template(template, tokenizer))[0]
    return [int(t) for t in ids], labels_from_mask(ids, mask, stage)
