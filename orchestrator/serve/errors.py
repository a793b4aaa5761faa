"""The serving layer's user errors: the CLI prints them in one line, the API turns them into OpenAI-style 4xx JSON."""

from __future__ import annotations

from orchestrator.errors import OrchError


class ServeError(OrchError):
    """A model folder cannot be loaded or served as asked (missing files, unknown base, bad options)."""


class ContextLengthError(ServeError):
    """The prompt (plus the tokens asked for) does not fit in the model's context window."""
