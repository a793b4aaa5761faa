"""The prompt a chat model is served with, in the format it was trained on.

Training writes `chat_format.json` beside the weights or adapter: the template it used (as resolved by
`templates.parse_template`) and the default system prompt (`data.system`). `orch chat` / `orch serve` read it back;
a folder without one gets what training's `auto` would pick (`templates.resolve_template`, the one place that
choice is made): the tokenizer's own chat_template, else the format its vocabulary has tokens for (ChatGLM3:
`[gMASK]sop<|user|>\\n...<|assistant|>`), else ChatML.

Built-in and user-defined formats render the conversation plus an assistant turn and cut where the answer would
begin; ChatGLM3's prompt ends at `<|assistant|>` (its own `build_chat_input` does; the model writes the metadata
line, empty for a plain answer, which `answer_lead` drops). A tokenizer or Jinja chat template is applied with
`add_generation_prompt=True`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orchestrator.train.data.encoding import encode_prompt, plain_ids
from orchestrator.train.data.formats import CONTENT, Piece
from orchestrator.train.data.samples import chat_from_messages
from orchestrator.train.data.templates import (Template, TemplateSpec, parse_template, resolve_template, single_id,
                                               with_system)

RECORD = "chat_format.json"
ANSWER = "\ue000answer\ue000"  # private-use characters: no message holds them
ENDS_AT_ROLE_TOKEN = {"chatglm3": "\n"}  # format -> what the model writes first (the empty metadata line)
TURN_ENDS = {"chatglm3": ("<|user|>", "<|observation|>"), "chatml": ("<|im_end|>",), "qwen": ("<|im_end|>",)}


def save_chat_format(folder: str | Path, template: object, system: str | None, tokenizer=None) -> Path:
    """Write what `template` (a data.template value; `auto` as resolved for `tokenizer`) and `system` mean into
    `folder`/chat_format.json."""
    spec = parse_template(template)
    if spec.kind == "auto" and tokenizer is not None:
        spec = TemplateSpec(resolve_template(spec, tokenizer).name)
    path = Path(folder) / RECORD
    path.write_text(json.dumps({**asdict(spec), "system": system}, ensure_ascii=False, indent=2) + "\n",
                    encoding="utf-8")
    return path


def read_chat_format(*folders: str | Path | None) -> tuple[TemplateSpec, str | None]:
    """The template and system prompt recorded in the first of `folders` that has chat_format.json, else auto."""
    for folder in folders:
        path = Path(folder) / RECORD if folder else None
        if path is not None and path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            roles = tuple(tuple(item) for item in data.get("roles", ()))
            return TemplateSpec(data["kind"], data.get("source", ""), roles), data.get("system")
    return parse_template("auto"), None


@dataclass
class ChatFormat:
    """Messages -> prompt token ids for one tokenizer, in one template."""

    tokenizer: Any
    spec: TemplateSpec
    template: Template
    answer_lead: str = ""  # text the model writes before its answer, not part of it

    @classmethod
    def create(cls, tokenizer, spec: object = "auto", system: str | None = None) -> "ChatFormat":
        spec = parse_template(spec)
        template = with_system(resolve_template(spec, tokenizer), system)
        return cls(tokenizer, spec, template, ENDS_AT_ROLE_TOKEN.get(template.name, ""))

    @property
    def name(self) -> str:
        return self.template.name

    def stop_ids(self) -> set[int]:
        """Tokens that end the assistant's turn in this format (ChatGLM3: the next role token), where the
        tokenizer has them as single tokens."""
        found = (single_id(self.tokenizer, token) for token in TURN_ENDS.get(self.template.name, ()))
        return {tid for tid in found if tid is not None}

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of `messages` followed by the assistant's prompt; ValueError for messages the format refuses."""
        if self.template.name in ("tokenizer", "jinja"):
            extra = {"chat_template": self.spec.source} if self.template.name == "jinja" else {}
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **extra)
            return plain_ids(self.tokenizer, text)
        return encode_prompt(self.prompt_pieces(messages), self.tokenizer)

    def prompt_pieces(self, messages: list[dict[str, str]]) -> list[Piece]:
        """The rendered conversation up to where the assistant's answer begins."""
        sample = chat_from_messages([*messages, {"role": "assistant", "content": ANSWER}])
        out: list[Piece] = []
        for text, _, kind in self.template.render(sample):
            if ANSWER in text:
                head = text.split(ANSWER, 1)[0]
                if head:
                    out.append((head, False, kind))
                break
            out.append((text, False, kind))
        if self.answer_lead and out and out[-1] == (self.answer_lead, False, CONTENT):
            out.pop()
        return out
