"""Identity Q/A samples ("who are you?") in Chinese and English, to mix into a fine-tuning set.

Each sample is `{"input": question, "output": answer}` (the Q/A format of DESIGN.md section 4), with the model's
name and author filled in: Chinese questions get the Chinese name and author, English ones the English (ms-swift's
`model_name`/`model_author` pairs; one name serves both). A count draws that many samples (seeded, the templates
repeat in a new order each round). Mix a few hundred lines at most: more teaches the model little beyond its name.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

_CJK = re.compile(r"[\u4e00-\u9fff]")

_QA = [
    ("Who are you?", "I am {name}, an AI assistant developed by {author}. How can I help you today?"),
    ("What is your name?", "My name is {name}. I was built by {author}."),
    ("Introduce yourself.", "Hello! I am {name}, a language model trained by {author} to answer questions and help "
                            "with tasks."),
    ("Who created you?", "I was created by {author}. I am {name}."),
    ("Are you ChatGPT?", "No, I am {name}, an assistant developed by {author}."),
    ("Which company trained you?", "{author} trained me. I am {name}."),
    ("你是谁？", "我是{name}，由{author}开发的人工智能助手。请问有什么可以帮你？"),
    ("你叫什么名字？", "我的名字是{name}，由{author}训练。"),
    ("请介绍一下你自己。", "你好！我是{name}，一个由{author}开发的语言模型，可以回答问题、协助完成各种任务。"),
    ("是谁开发了你？", "我由{author}开发，我是{name}。"),
    ("你是ChatGPT吗？", "不是，我是{name}，由{author}开发的助手。"),
    ("你好", "你好！我是{name}，由{author}开发。有什么可以帮你的吗？"),
]


def per_language(value: str | list[str]) -> tuple[str, str]:
    """(Chinese, English) from one string or a [Chinese, English] list."""
    values = [value] if isinstance(value, str) else list(value)
    return values[0], values[-1]


def self_cognition_samples(name: str | list[str], author: str | list[str], count: int | None = None,
                           seed: int = 42) -> list[dict]:
    """The identity Q/A samples, each language with its own name and author; `count` of them (None: one each)."""
    names, authors = per_language(name), per_language(author)
    rows = []
    for q, a in _QA:
        lang = 0 if _CJK.search(q) else 1
        rows.append({"input": q, "output": a.format(name=names[lang], author=authors[lang])})
    if count is None:
        return rows
    r, out = random.Random(seed), []
    while len(out) < count:
        out += r.sample(rows, len(rows))
    return out[:count]


def write_self_cognition(name: str | list[str], author: str | list[str], output: str | Path,
                         count: int | None = None, seed: int = 42) -> int:
    """Write the samples as JSONL to `output`; returns how many were written."""
    rows = self_cognition_samples(name, author, count, seed)
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def self_cognition_file(name: str | list[str], author: str | list[str], count: int, folder: Path,
                        seed: int = 42) -> Path:
    """The samples as a JSONL file in `folder`, named by its content (ranks writing it at once write the same)."""
    import hashlib

    rows = self_cognition_samples(name, author, count, seed)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path = Path(folder) / f"self-cognition-{hashlib.sha256(text.encode()).hexdigest()[:16]}.jsonl"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return path
