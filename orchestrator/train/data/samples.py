"""The one internal sample type every reader produces, and the checks a chat must pass."""

from __future__ import annotations

from dataclasses import dataclass, field

ROLE_ALIASES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "observation": "observation",
    "tool": "observation",
    "function": "observation",
}
NEXT_ROLES = {None: ("user",), "user": ("assistant",), "assistant": ("user", "observation"),
              "observation": ("assistant", "observation")}


@dataclass
class Sample:
    """A chat (optional system prompt + user/assistant turns, tool results as `observation` turns) or plain text.

    Plain text (`text` set) is pretraining data: loss on every token. In a chat, loss is on assistant turns only.
    `metadata` maps a turn number to its ChatGLM3-style metadata (the tool an assistant turn calls).
    """

    turns: list[tuple[str, str]] = field(default_factory=list)
    system: str | None = None
    text: str | None = None
    metadata: dict[int, str] = field(default_factory=dict)

    def messages(self) -> list[dict[str, str]]:
        """The chat as a list of `{"role", "content"}` dicts (plus `metadata` where set), system first."""
        head = [{"role": "system", "content": self.system}] if self.system is not None else []
        turns = [{"role": r, "content": c} for r, c in self.turns]
        for i, meta in self.metadata.items():
            turns[i]["metadata"] = meta
        return head + turns


def chat_from_messages(messages: list) -> Sample:
    """Validate a message list (role/content or from/value) and build a chat `Sample`.

    Roles `tool` and `function` are observation turns (tool results). Raises ValueError with the problem: unknown
    role, `system` not first or repeated, a role out of order (user first; user -> assistant -> user or
    observation; observation -> assistant or observation), or a chat that does not end with an assistant turn.
    """
    if not isinstance(messages, list) or not messages:
        raise ValueError("the message list is empty or not a list")
    system = None
    turns: list[tuple[str, str]] = []
    metadata: dict[int, str] = {}
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise ValueError(f"message {i} is not an object")
        raw_role = msg.get("role", msg.get("from"))
        content = msg.get("content", msg.get("value"))
        role = ROLE_ALIASES.get(str(raw_role).lower()) if raw_role is not None else None
        if role is None:
            raise ValueError(f"message {i} has unknown or missing role {raw_role!r}")
        if not isinstance(content, str):
            raise ValueError(f"message {i} ({role}) has no string 'content'")
        if role == "system":
            if i != 0:
                raise ValueError(f"message {i}: a system turn is only allowed once, as the first message")
            system = content
            continue
        expected = NEXT_ROLES[turns[-1][0] if turns else None]
        if role not in expected:
            raise ValueError(f"message {i}: wrong role order: expected {' or '.join(expected)}, got {role}")
        if msg.get("metadata"):
            if not isinstance(msg["metadata"], str):
                raise ValueError(f"message {i} ({role}) has a non-string 'metadata'")
            metadata[len(turns)] = msg["metadata"]
        turns.append((role, content))
    if not turns or turns[-1][0] != "assistant":
        raise ValueError("the chat must end with an assistant turn")
    return Sample(turns=turns, system=system, metadata=metadata)
