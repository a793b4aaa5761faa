"""Chat formats: how each template lays a `Sample` out as text, as pieces with loss flags (no token ids here).

A piece is `(text, loss, kind)`. `kind` tells the segment-by-segment encoder (slow tokenizers) how to encode it:
- CONTENT: plain text (the sample's own words, template text without control tokens);
- SPECIAL: one control token of the format (`<|im_start|>`, `<|user|>`, `[gMASK]`, `sop`, BOS/EOS), mapped to its
  single id where the tokenizer has one (ChatGLM3's tokenizer does not split role tokens out of text);
- MARKUP: template text that may hold control tokens (user-defined formats, chat_template output): split at
  marker-shaped substrings (MARKER_RE) first.

Built-in formats (loss in [brackets]; BOS/EOS are the tokenizer's, left out when it has none):
- chatml:   `<|im_start|>{role}\\n[{content}<|im_end|>]\\n` per turn; observation (tool) turns use role `tool`.
- qwen:     chatml, with the system prompt "You are a helpful assistant." when the sample has none.
- raw:      every turn's content verbatim with nothing added, then EOS: `{input}[{output}EOS]`. Multi-turn: each
            assistant turn is trained, EOS follows the last turn only (the text carries its own markup).
- fm9g:     `BOS{system}<用户>{user}<AI>[{assistant}EOS]`: FM9G/MiniCPM, the system prompt (if any) as plain text
            after BOS, EOS after each assistant turn; no tool turns.
- chatglm3: `[gMASK]sop`, then `<|{role}|>{metadata}\\n{content}` per turn, then EOS. As ChatGLM3's finetune_hf.py
            (masks shifted by one), loss on an assistant turn's `{metadata}\\n{content}` and on the token after
            it: the next turn's role token (`<|user|>`, `<|observation|>`) or the final EOS.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.train.data.samples import Sample

CONTENT, SPECIAL, MARKUP = 0, 1, 2
Piece = tuple[str, bool, int]
MARKER_RE = re.compile(r"<\|[^<>|\s]{1,40}\|>|</?[^<>\s]{1,40}>|\[[A-Za-z]{1,20}\]")
QWEN_SYSTEM = "You are a helpful assistant."
CHATML_ROLES = {"observation": "tool"}
FM9G_ROLES = {"user": "<用户>", "assistant": "<AI>"}


@dataclass(frozen=True)
class Specials:
    """The tokenizer's BOS and EOS token strings ("" when it has none)."""

    bos: str
    eos: str


class Pieces(list):
    """A list of pieces that skips empty text."""

    def add(self, text: str, loss: bool = False, kind: int = CONTENT) -> None:
        """Append one piece unless `text` is empty."""
        if text:
            self.append((text, loss, kind))


def turns(sample: Sample, default_system: str | None = None) -> list[tuple[str, str, str]]:
    """(role, content, metadata) of every turn, the system prompt (or `default_system`) first."""
    system = sample.system if sample.system is not None else default_system
    head = [("system", system, "")] if system is not None else []
    return head + [(role, content, sample.metadata.get(i, "")) for i, (role, content) in enumerate(sample.turns)]


def chatml(sample: Sample, specials: Specials, default_system: str | None = None) -> list[Piece]:
    """ChatML; loss on assistant content + `<|im_end|>` (written for speed: the index renders every sample)."""
    out: list[Piece] = []
    add = out.append
    for role, content, _ in turns(sample, default_system):
        trained = role == "assistant"
        add(("<|im_start|>", False, SPECIAL))
        add((CHATML_ROLES.get(role, role) + "\n", False, CONTENT))
        if content:
            add((content, trained, CONTENT))
        add(("<|im_end|>", trained, SPECIAL))
        add(("\n", False, CONTENT))
    return out


def qwen(sample: Sample, specials: Specials) -> list[Piece]:
    """ChatML with Qwen's default system prompt."""
    return chatml(sample, specials, QWEN_SYSTEM)


def raw(sample: Sample, specials: Specials) -> list[Piece]:
    """Contents verbatim, EOS at the end; loss on assistant contents + EOS."""
    out = Pieces()
    for role, content, _ in turns(sample):
        out.add(content, role == "assistant")
    out.add(specials.eos, True, SPECIAL)
    return out


def fm9g(sample: Sample, specials: Specials) -> list[Piece]:
    """FM9G / MiniCPM `<用户>...<AI>...`; loss on assistant content + EOS."""
    out = Pieces()
    out.add(specials.bos, kind=SPECIAL)
    for role, content, _ in turns(sample):
        if role == "system":
            out.add(content)
            continue
        if role not in FM9G_ROLES:
            raise ValueError("template fm9g has no format for observation (tool) turns; use chatglm3, chatml or a "
                             "user-defined template with an `observation` format")
        trained = role == "assistant"
        out.add(FM9G_ROLES[role], kind=SPECIAL)
        out.add(content, trained)
        if trained:
            out.add(specials.eos, True, SPECIAL)
    return out


def chatglm3(sample: Sample, specials: Specials) -> list[Piece]:
    """ChatGLM3 role tokens; loss as finetune_hf.py: assistant metadata + content and the token after the turn."""
    out = Pieces()
    out.add("[gMASK]", kind=SPECIAL)
    out.add("sop", kind=SPECIAL)
    after_assistant = False
    for role, content, metadata in turns(sample):
        out.add(f"<|{role}|>", after_assistant, SPECIAL)
        after_assistant = role == "assistant"
        out.add(metadata + "\n", after_assistant)
        out.add(content, after_assistant)
    out.add(specials.eos, after_assistant, SPECIAL)
    return out


BUILTIN_FORMATS: dict[str, Callable[[Sample, Specials], list[Piece]]] = {
    "chatml": chatml, "qwen": qwen, "raw": raw, "fm9g": fm9g, "chatglm3": chatglm3,
}


def split_markers(text: str) -> list[tuple[str, bool]]:
    """`text` cut at marker-shaped substrings: (part, is_marker) in order, no empty parts."""
    parts, pos = [], 0
    for match in MARKER_RE.finditer(text):
        if match.start() > pos:
            parts.append((text[pos : match.start()], False))
        parts.append((match.group(), True))
        pos = match.end()
    if pos < len(text):
        parts.append((text[pos:], False))
    return parts


def pieces_from_spans(text: str, spans: list[tuple[int, int]]) -> list[Piece]:
    """Cut rendered `text` into MARKUP pieces at the loss span boundaries."""
    out, pos = Pieces(), 0
    for start, end in spans:
        out.add(text[pos:start], False, MARKUP)
        out.add(text[start:end], True, MARKUP)
        pos = end
    out.add(text[pos:], False, MARKUP)
    return out


def chat_template(sample: Sample, tokenizer, source: str | None = None) -> list[Piece]:
    """Render with a Jinja chat template (the tokenizer's own, or `source`); assistant spans from growing prefixes.

    The span of assistant turn i is what `messages[:i+1]` adds to `messages[:i]` + generation prompt, trailing
    whitespace excluded. Observation turns are passed as role `tool`. A template that rewrites earlier turns
    cannot be masked this way: ValueError.
    """
    from jinja2 import TemplateError

    messages = [{**m, "role": CHATML_ROLES.get(m["role"], m["role"])} for m in sample.messages()]
    extra = {"chat_template": source} if source is not None else {}

    def render(msgs: list[dict], gen: bool) -> str:
        try:
            return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen, **extra)
        except TemplateError as exc:
            raise ValueError(f"the chat template failed on this sample: {exc}") from None

    full = render(messages, False)
    spans: list[tuple[int, int]] = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        prompt, upto = render(messages[:i], True), render(messages[: i + 1], False)
        if not (upto.startswith(prompt) and full.startswith(upto)):
            raise ValueError("the chat template rewrites earlier turns, so assistant tokens cannot be masked "
                             "reliably; choose a built-in template (template: chatml)")
        spans.append((len(prompt), len(upto.rstrip())))
    return pieces_from_spans(full, spans)
