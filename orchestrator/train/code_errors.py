"""One line for a failure inside a model folder's own code (ChatGLM3's, Qwen v1's: `trust_remote_code`).

transformers runs that code from its dynamic-module cache (`.../transformers_modules/<folder>/modeling_x.py`). When
an exception comes out of it, or out of a call transformers makes into it with arguments it does not take (the
method never starts, so no frame of the model's code is in the traceback: the message names the class), orch names
the file and line of the model's code, the exception, and, when the exception is one an API change raises, a hint
that the code and the installed transformers do not fit. The traceback is printed first (it stays in the log).
"""

from __future__ import annotations

import inspect
import re
import sys
import traceback
from pathlib import Path

DYNAMIC_MODULES = "transformers_modules"
_CALLEE = re.compile(r"(\w+)\.(\w+)\(\) (?:got an unexpected keyword argument|missing \d+ required|takes )")
_API_CHANGE = re.compile(r"unexpected keyword argument|required positional argument|positional arguments? but|"
                         r"has no attribute|cannot import name|No module named 'transformers")


def _shown(filename: str) -> str:
    """`<model folder name>/<file>` for a dynamic module's path."""
    parts = Path(filename).parts
    if DYNAMIC_MODULES in parts:
        return "/".join(parts[parts.index(DYNAMIC_MODULES) + 1:])
    return filename


def _callee(message: str) -> tuple[str, int, str] | None:
    """(file, line, qualified name) of a model-code method named in a TypeError about the call itself."""
    found = _CALLEE.search(message)
    if not found:
        return None
    owner, method = found.groups()
    for name, module in list(sys.modules.items()):
        if not name.startswith(DYNAMIC_MODULES + ".") or not isinstance(getattr(module, owner, None), type):
            continue
        function = getattr(getattr(module, owner), method, None)
        try:
            return inspect.getsourcefile(function), inspect.getsourcelines(function)[1], f"{owner}.{method}"
        except (TypeError, OSError):
            continue
    return None


def model_code_failure(exc: BaseException) -> str | None:
    """The one-line description of `exc` when it comes from a model folder's own code, else None."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if DYNAMIC_MODULES in Path(f.filename).parts]
    message = (str(exc).strip().splitlines() or [""])[0]
    if frames:
        where, name = f"{_shown(frames[-1].filename)}:{frames[-1].lineno}", frames[-1].name
    else:
        callee = _callee(message) if isinstance(exc, TypeError) else None
        if callee is None:
            return None
        where, name = f"{_shown(callee[0])}:{callee[1]}", callee[2]
    line = f"the model's own code failed in {name} ({where}): {type(exc).__name__}: {message}".rstrip(": ")
    if isinstance(exc, (TypeError, AttributeError, ImportError)) and _API_CHANGE.search(message) \
            and "'NoneType'" not in message:
        line += f"; hint: this looks like a version incompatibility: the model's code does not fit {_stack()}"
    return line


def _stack() -> str:
    """`transformers X.Y.Z` as installed."""
    try:
        from importlib.metadata import version

        return f"transformers {version('transformers')} (installed here); use the version its authors pin"
    except Exception:  # noqa: BLE001
        return "the installed transformers"


def print_traceback(exc: BaseException) -> None:
    """The full traceback on stderr (it stays in the log above orch's one line)."""
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    sys.stderr.flush()
