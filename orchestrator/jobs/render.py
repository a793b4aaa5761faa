"""Jinja rendering of the per-node scripts: built-in templates, optionally overridden by a user's folder."""

from __future__ import annotations

import functools
import re
import shlex
import threading
from concurrent.futures import Future
from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2

BUILTIN_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
# an env name containing any of these words (any case) names a secret: `*KEY*`, `*TOKEN*`, ... in docs/clusters.md
_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE", re.IGNORECASE)
MASK = "***"
# `NAME = value` in TOML text: a bare, dotted-part or quoted name; a multi-line, basic, literal or bare value
_TOML_PAIR = re.compile(
    r"""(?P<name>[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')(?P<eq>[ \t]*=[ \t]*)"""
    r"""(?P<value>"{3}[\s\S]*?"{3}(?!")|'{3}[\s\S]*?'{3}(?!')|"(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^\s,}\]#"']+)""")


@functools.lru_cache(maxsize=8)
def environment(user_dir: str | None = None) -> jinja2.Environment:
    """A strict Jinja environment with the `q` (shell-quote) filter; `user_dir` templates win over built-ins.
    Jinja is imported here, not at the top: `orch status` and `orch logs` render nothing and start faster. Compiled
    templates are kept in `$ORCH_HOME/cache/jinja` (keyed by each template's source), so a launch compiles none."""
    import jinja2

    from orchestrator.paths import orch_home

    compiled = orch_home() / "cache" / "jinja"
    compiled.mkdir(mode=0o700, parents=True, exist_ok=True)

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
        bytecode_cache=jinja2.FileSystemBytecodeCache(str(compiled)),
    )
    env.filters["q"] = lambda value: shlex.quote(str(value))
    return env


def warm(user_dir: str | None = None) -> Future:
    """Load Jinja and the templates in a background thread (a launch does network round trips meanwhile); the
    future's result is `environment(user_dir)`. The thread ends once loaded: a launcher that later forks its
    watcher forks a single-threaded process."""
    future: Future = Future()

    def load() -> None:
        try:
            future.set_result(environment(user_dir))
        except BaseException as exc:  # handed to whoever waits on the future
            future.set_exception(exc)

    threading.Thread(target=load, name="orch-templates", daemon=True).start()
    return future


def is_secret(name: str) -> bool:
    """Whether an environment variable's value must never be shown (tokens, keys, passwords)."""
    return bool(_SECRET.search(name))


def masked_env(env: dict[str, str]) -> dict[str, str]:
    """The env with secret values replaced by `***`, for screens, logs and the local run folder."""
    return {key: (MASK if is_secret(key) else value) for key, value in env.items()}


def masked_toml(text: str) -> str:
    """TOML text (an inventory) with the value of every secret-named key replaced by `"***"`."""
    def mask(pair: re.Match) -> str:
        name = pair["name"].strip("\"'")
        return f'{pair["name"]}{pair["eq"]}"{MASK}"' if is_secret(name) else pair[0]

    return _TOML_PAIR.sub(mask, text)
