"""User-defined templates: the text around `{content}` for each role, in the training config or a YAML/JSON file.

    template:
      prefix: "{bos_token}"                              # once, before the first turn (optional)
      system: "<|system|>\\n{content}\\n"                  # needed when samples have a system prompt
      user: "<|user|>\\n{content}\\n"                      # required
      assistant: "<|assistant|>\\n{content}{eos_token}\\n"  # required
      observation: "<|observation|>\\n{content}\\n"        # tool results (optional)
      suffix: ""                                         # once, after the last turn (optional)
      default_system: "You are a helpful assistant."     # when a sample has no system prompt (optional)

Placeholders: `{content}` exactly once in each role format and nowhere else; `{bos_token}` / `{eos_token}` anywhere
(the tokenizer's, empty when it has none); `{{` and `}}` for literal braces. Loss: an assistant turn's content and
the rest of its format after `{content}` up to the last non-whitespace character (its end marker / EOS), not a
trailing newline. Substrings shaped like control tokens (`<|user|>`, `<s>`, `[INST]`) map to their single ids on
slow tokenizers and count as chat markup for the double-wrap check.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from orchestrator.errors import DataError
from orchestrator.train.data.formats import (
    MARKER_RE,
    MARKUP,
    SPECIAL,
    Piece,
    Pieces,
    Specials,
    turns,
)
from orchestrator.train.data.samples import Sample

ROLE_KEYS = ("system", "user", "assistant", "observation")
KEYS = ("prefix", "suffix", *ROLE_KEYS, "default_system")
PLACEHOLDERS = ("content", "bos_token", "eos_token")
_BRACES = "write {{ and }} for literal braces"


def check_roles(raw: dict, where: str) -> tuple[tuple[str, str], ...]:
    """Validate a role mapping (DataError `{where}{key}: problem`); returns its items sorted: a stable identity."""
    for key in raw:
        if key not in KEYS:
            raise DataError(f"{where}{key}: unknown key (known: {', '.join(KEYS)})")
    for key in ("user", "assistant"):
        if key not in raw:
            raise DataError(f"{where}{key}: required (a user-defined template needs user and assistant formats)")
    for key, value in raw.items():
        if not isinstance(value, str):
            raise DataError(f"{where}{key}: expected a string (got {value!r})")
        if key == "default_system":
            continue
        count = _fields(value, where + key).count("content")
        if key in ROLE_KEYS and count != 1:
            raise DataError(f"{where}{key}: must contain {{content}} exactly once (found {count})")
        if key not in ROLE_KEYS and count:
            raise DataError(f"{where}{key}: cannot contain {{content}}")
    return tuple(sorted(raw.items()))


def _fields(fmt: str, where: str) -> list[str]:
    """The placeholder names of a format string; DataError for bad syntax or unknown names."""
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError as exc:
        raise DataError(f"{where}: {exc} ({_BRACES})") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            raise DataError(f"{where}: unknown placeholder {{{name}}} (known: {{content}}, {{bos_token}}, "
                            f"{{eos_token}}; {_BRACES})")
        names.append(name)
    return names


def _segments(fmt: str, specials: Specials) -> list[Pieces]:
    """The pieces of a format string split at `{content}`: [before] or [before, after]."""
    parts = [Pieces()]
    for literal, name, _, _ in string.Formatter().parse(fmt):
        parts[-1].add(literal, kind=MARKUP)
        if name == "content":
            parts.append(Pieces())
        elif name is not None:
            parts[-1].add(specials.bos if name == "bos_token" else specials.eos, kind=SPECIAL)
    return parts


def _trained(after: list[Piece]) -> tuple[Piece, ...]:
    """`after` with loss up to its last non-whitespace character."""
    last = max((k for k, (text, _, _) in enumerate(after) if text.strip()), default=-1)
    out = Pieces()
    for k, (text, _, kind) in enumerate(after):
        core = text.rstrip() if k == last else text
        out.add(core, k <= last, kind)
        out.add(text[len(core):], False, kind)
    return tuple(out)


@dataclass(frozen=True)
class RoleFormat:
    """A user-defined template resolved against a tokenizer's BOS/EOS: callable like the built-in formats."""

    prefix: tuple[Piece, ...]
    suffix: tuple[Piece, ...]
    roles: dict[str, tuple[tuple[Piece, ...], tuple[Piece, ...]]]
    default_system: str | None

    def __call__(self, sample: Sample) -> list[Piece]:
        out = Pieces(self.prefix)
        for role, content, _ in turns(sample, self.default_system):
            if role not in self.roles:
                raise ValueError(f"the template has no `{role}` format, but the sample has a {role} turn")
            before, after = self.roles[role]
            out += before
            out.add(content, role == "assistant")
            out += after
        out += self.suffix
        return out


def role_format(items: tuple[tuple[str, str], ...], specials: Specials) -> RoleFormat:
    """Build the renderer of a checked role mapping (`check_roles`)."""
    raw = dict(items)
    roles = {}
    for key in ROLE_KEYS:
        if key in raw:
            before, after = _segments(raw[key], specials)
            roles[key] = (tuple(before), _trained(after) if key == "assistant" else tuple(after))
    edge = lambda key: tuple(_segments(raw.get(key, ""), specials)[0])  # noqa: E731
    return RoleFormat(edge("prefix"), edge("suffix"), roles, raw.get("default_system"))


def role_markers(items: tuple[tuple[str, str], ...]) -> list[str]:
    """The control-token-shaped substrings of a role mapping's formats."""
    return [m for key, fmt in items if key != "default_system" for m in MARKER_RE.findall(fmt)]
