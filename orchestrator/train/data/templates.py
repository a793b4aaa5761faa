"""Chat templates: which one applies, what identifies it in cache keys, and the refusal to wrap markup twice.

`template` (training config `data.template`, `orch data index|preview --template`) is one of:
- `auto`, the default of training, `orch data index`, `orch data preview`, `orch chat` and `orch serve` alike: the
  tokenizer's own chat_template when it has one; else the format its vocabulary has single tokens for
  (`<|user|>`, `<|assistant|>`, `[gMASK]`: chatglm3; `<用户>`, `<AI>`: fm9g); else qwen for Qwen v1 (`is_qwen_v1`);
  else chatml;
- `tokenizer`: the tokenizer's own chat_template (an error when it has none);
- a built-in format: chatml, qwen, raw, fm9g, chatglm3 (exact layouts and loss spans in `formats.py`);
- a Jinja chat template file (`.jinja` / `.j2`): rendered like a tokenizer chat_template, masked the same way;
- a role mapping (`custom_format.py`), inline in the training config, as a `.yaml`/`.yml`/`.json` file, or as
  inline JSON on the command line.
Loss is on assistant turns (with their end token) only; plain-text samples are followed by EOS and have loss on
every token, whatever the template.

Double wrapping: a chat whose text already holds chat markup (`<|im_start|>`, `<用户>`, `<|user|>`, ... of any
built-in format, plus a user-defined template's own control tokens) is refused under every template except
`raw`: `render` raises ValueError, which the index reports as `file:line: ...` (DataError, exit 2; counted and
skipped with skip_bad) and mixtures as `mix.json: dataset NAME: transformed sample N: ...`. A transform that
applies the chat template itself (the FM9G guide's add_template.py) wants `template: raw`.

A template's `key` goes into index cache keys: the name, plus a hash of the content of a user-defined one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from orchestrator.errors import DataError
from orchestrator.textio import read_text
from orchestrator.train.data import DEFAULT_TEMPLATE, formats  # DEFAULT_TEMPLATE re-exported
from orchestrator.train.data.custom_format import check_roles, role_format, role_markers
from orchestrator.train.data.formats import CONTENT, SPECIAL, Piece, Specials
from orchestrator.train.data.samples import Sample

TEMPLATE_NAMES = ("auto", "tokenizer", *formats.BUILTIN_FORMATS)
JINJA_SUFFIXES = (".jinja", ".j2")
MAPPING_SUFFIXES = (".yaml", ".yml", ".json")
TEMPLATE_FILE_SUFFIXES = JINJA_SUFFIXES + MAPPING_SUFFIXES
KNOWN_MARKERS = ("<|im_start|>", "<|im_end|>", "<用户>", "<AI>", "<|system|>", "<|user|>", "<|assistant|>",
                 "<|observation|>", "[gMASK]")
VOCAB_FORMATS = (("chatglm3", ("<|user|>", "<|assistant|>", "[gMASK]")), ("fm9g", ("<用户>", "<AI>")))


@dataclass(frozen=True)
class TemplateSpec:
    """What the user asked for, checked but not yet resolved against a tokenizer."""

    kind: str  # a name from TEMPLATE_NAMES, "jinja" or "custom"
    source: str = ""  # a Jinja template's text
    roles: tuple[tuple[str, str], ...] = ()  # a user-defined template's formats

    @property
    def key(self) -> str:
        """The name; a user-defined template's content hash too."""
        if self.kind == "jinja":
            return f"jinja-{_digest(self.source)}"
        if self.kind == "custom":
            return f"custom-{_digest(json.dumps(self.roles, ensure_ascii=False))}"
        return self.kind


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_template(value: object, where: str = "template") -> TemplateSpec:
    """Check a template value (name, file path, inline JSON or mapping); DataError names `where` and the key."""
    if isinstance(value, TemplateSpec):
        return value
    if isinstance(value, dict):
        return TemplateSpec("custom", roles=check_roles(value, f"{where}."))
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: expected a template name, a .jinja file or a mapping of role formats "
                        f"(got {value!r})")
    if value in TEMPLATE_NAMES:
        return TemplateSpec(value)
    if value.lstrip().startswith("{"):
        try:
            mapping = json.loads(value)
        except ValueError as exc:
            raise DataError(f"{where}: not valid JSON: {exc}") from None
        return parse_template(mapping if isinstance(mapping, dict) else None, where)
    path = Path(value).expanduser()
    if path.suffix not in TEMPLATE_FILE_SUFFIXES:
        raise DataError(f"{where}: unknown template {value!r}; known: {', '.join(TEMPLATE_NAMES)}, a "
                        f"{'/'.join(JINJA_SUFFIXES)} chat template file or a mapping of role formats")
    if not path.is_file():
        raise DataError(f"{where}: template file not found: {path}")
    text = read_text(path, option=False).replace("\r\n", "\n")  # saved on Windows: renders as on Linux
    if path.suffix in JINJA_SUFFIXES:
        return TemplateSpec("jinja", source=text)
    return _mapping_file(path, text)


def _mapping_file(path: Path, text: str) -> TemplateSpec:
    """A role mapping from a YAML or JSON file."""
    from orchestrator.yamlio import parse_yaml

    mapping = parse_yaml(text, str(path), DataError)
    if not isinstance(mapping, dict):
        raise DataError(f"{path}: a template file must hold a mapping of role formats (user, assistant, ...)")
    return TemplateSpec("custom", roles=check_roles(mapping, f"{path}: "))


@dataclass(frozen=True)
class Template:
    """A template resolved against a tokenizer: `render(sample)` -> pieces (see formats.py)."""

    name: str  # shown to users: chatml, qwen, raw, fm9g, chatglm3, tokenizer, jinja, custom
    key: str  # identity in cache keys
    renderer: Callable[[Sample], list[Piece]]
    eos: str
    markers: re.Pattern | None = None  # chat markup refused in a sample's text (None: raw)
    marker_starts: str = ""  # the first characters of those markers: a cheap scan before the regex
    chatml: bool = False  # the ChatML special-token fast path applies

    def render(self, sample: Sample) -> list[Piece]:
        """The sample's pieces; ValueError for text that holds chat markup already or that the format cannot lay
        out."""
        if sample.text is not None:
            out = formats.Pieces()
            out.add(sample.text, True, CONTENT)
            out.add(self.eos, True, SPECIAL)
            return out
        if self.markers is not None:
            self._refuse_markup(sample)
        return self.renderer(sample)

    def _refuse_markup(self, sample: Sample) -> None:
        """ValueError when any turn's text holds chat markup (it would be wrapped a second time)."""
        joined = "\0".join([sample.system or "", *(content for _, content in sample.turns), *sample.metadata.values()])
        if not any(ch in joined for ch in self.marker_starts) or not self.markers.search(joined):
            return  # the common case, in one scan
        for role, content, metadata in formats.turns(sample):
            found = self.markers.search(content) or self.markers.search(metadata)
            if found:
                raise ValueError(f"the {role} turn already holds chat markup {found.group()!r}, which template "
                                 f"{self.name} would wrap a second time; for data that carries its own markup "
                                 f"(a transform that applies the chat template) use template: raw")


def single_id(tokenizer, token: str) -> int | None:
    """The id of `token` when the tokenizer has it as one token, else None."""
    try:
        tid = tokenizer.convert_tokens_to_ids(token)
    except (KeyError, ValueError, TypeError, IndexError):
        return None
    if not isinstance(tid, int) or tid < 0:
        return None
    unk = tokenizer.unk_token_id
    if unk is None and tokenizer.unk_token:  # a read-only `unk_token` property (ChatGLM3's) on transformers 5
        unk = tokenizer.convert_tokens_to_ids(tokenizer.unk_token)
    if tid == unk and token != tokenizer.unk_token:
        return None
    return tid


def _vocab_format(tokenizer) -> str:
    """The built-in format whose control tokens the vocabulary has; qwen for Qwen v1; else chatml."""
    for name, tokens in VOCAB_FORMATS:
        if all(single_id(tokenizer, t) is not None for t in tokens):
            return name
    return "qwen" if is_qwen_v1(tokenizer) else "chatml"


def is_qwen_v1(tokenizer) -> bool:
    """Qwen-7B/14B-Chat v1: ChatML control tokens, no chat template of its own, and Qwen's end-of-document id
    attribute (`eod_id`) or `model_type: qwen` in the folder's config.json. Its own `chat()` always sends the
    system prompt "You are a helpful assistant.", which the `qwen` format adds."""
    if not all(single_id(tokenizer, t) is not None for t in ("<|im_start|>", "<|im_end|>")):
        return False
    if isinstance(getattr(tokenizer, "eod_id", None), int):
        return True
    try:
        config = json.loads((Path(tokenizer.name_or_path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False
    return isinstance(config, dict) and config.get("model_type") == "qwen"


def _pattern(markers: list[str]) -> re.Pattern:
    return re.compile("|".join(map(re.escape, sorted(set(markers), key=len, reverse=True))))


def resolve_template(value: object, tokenizer) -> Template:
    """The `Template` for a template value (see the module docstring) and a tokenizer."""
    if isinstance(value, Template):
        return value
    spec = parse_template(value)
    kind = spec.kind
    has_own = bool(getattr(tokenizer, "chat_template", None))
    if kind == "auto":
        kind = "tokenizer" if has_own else _vocab_format(tokenizer)
    if kind == "tokenizer" and not has_own:
        raise DataError("template 'tokenizer' asked for, but the tokenizer has no chat_template")
    specials = Specials(bos=tokenizer.bos_token or "", eos=tokenizer.eos_token or "")
    markers = list(KNOWN_MARKERS)
    if kind in formats.BUILTIN_FORMATS:
        renderer = partial(formats.BUILTIN_FORMATS[kind], specials=specials)
    elif kind == "custom":
        renderer = role_format(spec.roles, specials)
        markers += role_markers(spec.roles)
    else:  # tokenizer or jinja
        renderer = partial(formats.chat_template, tokenizer=tokenizer, source=spec.source if kind == "jinja" else None)
    key = spec.key if kind in ("custom", "jinja") else kind
    return Template(kind, key, renderer, specials.eos, None if kind == "raw" else _pattern(markers),
                    "".join(sorted({m[0] for m in markers})), chatml=kind in ("chatml", "qwen"))


def with_system(template: Template, system: str | None) -> Template:
    """`template` giving samples without a system prompt `system` (ms-swift's `--system`); its key says so."""
    if system is None:
        return template
    from dataclasses import replace

    def render(sample: Sample, inner=template.renderer) -> list[Piece]:
        return inner(sample if sample.system is not None else replace(sample, system=system))

    return replace(template, key=f"{template.key}+system-{_digest(system)}", renderer=render)
