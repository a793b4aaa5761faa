"""Multi-turn chat in the terminal, rendered with the model's own chat template.

Interactive (a TTY): a `you>` prompt, answers stream in, Ctrl-C stops an answer. Piped: one line in is one user
turn, the answer is printed followed by a newline, EOF ends. Commands: `/clear` forgets the conversation,
`/exit` (or `/quit`) leaves. When the conversation outgrows the context window the oldest turns are dropped.
"""

from __future__ import annotations

from typing import TextIO

from orchestrator.serve.errors import ContextLengthError
from orchestrator.serve.generation import Engine, SamplingParams


def _fit(engine: Engine, messages: list[dict[str, str]], min_room: int) -> list[int]:
    """Template `messages`, dropping the oldest non-system turns until `min_room` tokens are left to answer."""
    while True:
        ids = engine.prompt_ids(messages)
        if engine.context_length - len(ids) >= min_room:
            return ids
        first = 1 if messages and messages[0]["role"] == "system" else 0
        if len(messages) - first <= 1:
            raise ContextLengthError(
                f"this message is {len(ids)} tokens; the model's context length is {engine.context_length}"
            )
        del messages[first]


def chat_loop(engine: Engine, params: SamplingParams, stdin: TextIO, stdout: TextIO,
              interactive: bool, system: str | None = None) -> None:
    """Read user turns from `stdin` until EOF or `/exit`, streaming each answer to `stdout`."""
    base = [{"role": "system", "content": system}] if system else []
    messages = list(base)

    def say(text: str) -> None:
        stdout.write(text)
        stdout.flush()

    if interactive:
        say("Chat with the model: /clear forgets the conversation, /exit leaves, Ctrl-C stops an answer.\n")
    while True:
        if interactive:
            say("you> ")
        try:
            line = stdin.readline()
        except KeyboardInterrupt:
            line = ""
        if not line:
            if interactive:
                say("\n")
            return
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return
        if text == "/clear":
            messages = list(base)
            if interactive:
                say("(conversation cleared)\n")
            continue
        messages.append({"role": "user", "content": text})
        try:
            prompt = _fit(engine, messages, min_room=min(params.max_tokens, 16))
        except (ContextLengthError, ValueError) as exc:  # too long, or text the chat format refuses
            messages.pop()
            say(f"error: {exc}\n")
            continue
        budget = min(params.max_tokens, engine.context_length - len(prompt))
        if interactive:
            say("assistant> ")
        run = SamplingParams(**{**params.__dict__, "max_tokens": budget})
        try:
            answer = engine.generate(prompt, run, on_text=say).text
        except KeyboardInterrupt:
            messages.pop()
            say("\n(stopped)\n")
            continue
        messages.append({"role": "assistant", "content": answer})
        say("\n")
