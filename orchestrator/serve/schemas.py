"""The OpenAI chat-completions wire format: a strict request model and builders for responses, chunks and errors."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_STOP_STRINGS = 4
_UNION_TAGS = {"str", "int", "float", "bool", "none"}


class Message(BaseModel):
    """A chat message; `developer` is treated as `system`, as OpenAI does for chat models."""

    model_config = ConfigDict(strict=True, extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None

    @field_validator("content")
    @classmethod
    def _text_parts_only(cls, value: str | list[dict[str, Any]] | None) -> str | list[dict[str, Any]] | None:
        for part in value if isinstance(value, list) else []:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ValueError(f"only text content parts are supported, not {part.get('type')!r}")
        return value

    def as_template_input(self) -> dict[str, str]:
        """The `{"role", "content"}` dict that chat templates expect (text parts joined)."""
        content = self.content if isinstance(self.content, str) else "".join(p["text"] for p in self.content or [])
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class StreamOptions(BaseModel):
    """`stream_options`: `include_usage` adds a last chunk carrying `usage`."""

    model_config = ConfigDict(strict=True, extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """POST /v1/chat/completions: types are checked strictly (a string is not a number); unknown keys are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise ValueError("only n=1 is supported")
        return value

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings are allowed")
        return value

    def stop_strings(self) -> tuple[str, ...]:
        """`stop` as a tuple (a single string is one stop string)."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def requested_max_tokens(self) -> int | None:
        """`max_completion_tokens` (the newer name) or else `max_tokens`."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """The OpenAI error object: `{"error": {"message", "type", "param", "code"}}`."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def describe_validation_error(exc: ValidationError) -> tuple[str, str | None]:
    """A one-line message and the offending parameter for the first problem pydantic found."""
    first = exc.errors(include_url=False)[0]
    loc = [str(part) for part in first.get("loc", ())]
    # pydantic names the union branch tried last ("str", "list[dict[str,any]]"); users care about the field path.
    path = ".".join(p for p in loc if p not in _UNION_TAGS and not p.startswith(("list[", "dict[", "function-")))
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return (f"{path}: {message}" if path else message), path or None


def new_completion_id() -> str:
    """A fresh `chatcmpl-...` id."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The `usage` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_body(cid: str, model: str, text: str, finish_reason: str, prompt_tokens: int,
                    completion_tokens: int) -> dict[str, Any]:
    """A non-streaming `chat.completion` response."""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chunk_body(cid: str, model: str, created: int, delta: dict[str, Any] | None,
               finish_reason: str | None = None, usage_info: dict[str, int] | None = None,
               with_usage_field: bool = False) -> dict[str, Any]:
    """One `chat.completion.chunk`; `delta=None` makes the usage-only chunk with no choices."""
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if with_usage_field:
        body["usage"] = usage_info
    return body


def models_body(model: str, created: int) -> dict[str, Any]:
    """GET /v1/models: the one model this server serves."""
    return {"object": "list", "data": [{"id": model, "object": "model", "created": created, "owned_by": "orch"}]}
