"""Jinja rendering of the per-node scripts: built-in templates, optionally overridden by a user's folder."""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path

import jinja2

BUILTIN_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_SECRET = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|CREDENTIAL|PRIVATE)", re.IGNORECASE)


@functools.lru_cache(maxsize=8)
def environment(user_dir: str | None = None) -> jinja2.Environment:
    """A strict Jinja environment with the `q` (shell-quote) filter; `user_dir` templates win over built-ins."""
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(BUILTIN_TEMPLATES))]
    if user_dir:
        loaders.insert(0, jinja2.FileSystemLoader(user_dir))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["q"] = lambda value: shlex.quote(str(value))
    return env


def is_secret(name: str) -> bool:
    """Whether an environment variable's value must never be shown (tokens, keys, passwords)."""
    return bool(_SECRET.search(name))


def masked_env(env: dict[str, str]) -> dict[str, str]:
    """The env with secret values replaced by `***`, for screens, logs and the local run folder."""
    return {key: ("***" if is_secret(key) else value) for key, value in env.items()}
