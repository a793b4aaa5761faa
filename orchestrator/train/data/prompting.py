"""The chat format a trained model answers in: recorded beside the weights by training, laid out the same way by
`orch chat` / `orch serve` and generation-based evaluation.

Training writes `orch_template.json` (its `data.template` and `data.system`) into the output folder, and
`orch merge` copies it to the merged folder. Serving reads it from the adapter or model folder it loads (`auto`
when there is none, the same choice training's default makes, `templates.resolve_template`). A template other
than the tokenizer's own chat_template lays the prompt out with the very pieces training encoded
(`generation_prompt`), and the tokens that end an assistant turn in that format (`<|im_end|>` for ChatML and
qwen) stop generation.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from orchestrator.train.data import DEFAULT_TEMPLATE
from orchestrator.train.data.encoding import encode_many
from orchestrator.train.data.pack import split_point
from orchestrator.train.data.samples import chat_from_messages
from orchestrator.train.data.formats import CONTENT, SPECIAL, split_markers
from orchestrator.train.data.templates import Template, parse_template, resolve_template, single_id, with_system

RECORD_FILE = "orch_template.json"
TURN_ENDS = {"chatglm3": ("<|user|>", "<|observation|>")}  # also end a turn (ChatGLM3's chat() stops at them)
ANSWER_LEADS = {"chatglm3": "\n"}


def write_record(folder: str | Path, template: object, system: str | None, tokenizer) -> None:
    """Record the template training used (`auto` as what it picked for `tokenizer`; a Jinja file as its text) and
    the system prompt in `folder`."""
    spec = parse_template(template)
    value = {"jinja": spec.source} if spec.kind == "jinja" else dict(spec.roles) if spec.kind == "custom" \
        else resolve_template(spec, tokenizer).name
    path = Path(folder) / RECORD_FILE
    path.write_text(json.dumps({"template": value, "system": system}, ensure_ascii=False), encoding="utf-8")


def copy_record(source: str | Path, target: str | Path) -> None:
    """Carry the record from an adapter folder to the folder it is merged into."""
    if (Path(source) / RECORD_FILE).is_file():
        shutil.copy(Path(source) / RECORD_FILE, Path(target) / RECORD_FILE)


def recorded_template(folders: list[Path], tokenizer) -> Template:
    """The template training recorded in the first of `folders` that has a record, else `auto`; resolved."""
    for folder in folders:
        try:
            record = json.loads((Path(folder) / RECORD_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        value = record.get("template", DEFAULT_TEMPLATE)
        if isinstance(value, dict) and set(value) == {"jinja"}:
            from orchestrator.train.data.templates import TemplateSpec

            value = TemplateSpec("jinja", source=value["jinja"])
        return with_system(resolve_template(value, tokenizer), record.get("system"))
    return resolve_template(DEFAULT_TEMPLATE, tokenizer)


def generation_prompt(messages: list[dict], tokenizer, template: Template) -> list[int]:
    """The token ids of `messages` laid out by `template`, ready for the assistant's answer. ValueError for
    messages the template cannot lay out.

    The prompt stops where training's loss starts: ChatGLM3's at `<|assistant|>` (the model writes the metadata
    line, `answer_lead`), as its own `build_chat_input` does."""
    ids, mask = encode_many([_answering(messages)], tokenizer, template)[0]
    return [int(t) for t in ids[:split_point(mask)]]


def turn_ends(tokenizer, template: Template) -> list[int]:
    """The control tokens that end an assistant turn in `template`'s format: the trained ones after an (empty)
    answer, and the format's own (`TURN_ENDS`)."""
    ends: set[int | None] = {single_id(tokenizer, token) for token in TURN_ENDS.get(template.name, ())}
    for text, loss, kind in template.render(_answering([{"role": "user", "content": "?"}])):
        if loss and kind != CONTENT:
            parts = [text] if kind == SPECIAL else [part for part, marker in split_markers(text) if marker]
            ends.update(single_id(tokenizer, part) for part in parts)
    return sorted(t for t in ends if t is not None)


def _answering(messages: list[dict]):
    """`messages` with an empty assistant turn after them, as a chat sample."""
    return chat_from_messages([*messages, {"role": "assistant", "content": ""}])


def answer_lead(template: Template) -> str:
    """What the model writes before its answer in this format and is not part of it (ChatGLM3: the empty metadata
    line, "\\n")."""
    return ANSWER_LEADS.get(template.name, "")


def prompt_text(messages: list[dict], template: Template) -> tuple[str, str]:
    """(the text of `messages` laid out by `template` up to the assistant's answer; the text that ends an
    assistant turn there), from the same pieces training encodes: what a trainer that tokenizes text itself (trl's
    DPO) is given."""
    pieces = template.render(_answering(messages))
    last = max((i for i, (_, loss, _) in enumerate(pieces) if loss), default=len(pieces))
    first = last
    while first > 0 and pieces[first - 1][1]:
        first -= 1
    return "".join(p[0] for p in pieces[:first]), "".join(p[0] for p in pieces[first:last + 1])
