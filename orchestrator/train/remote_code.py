"""Models and tokenizers that ship their own code (ChatGLM3, Qwen-7B-Chat v1, FM9G): decide before loading.

transformers runs a folder's own `.py` files only with `trust_remote_code=True`; left unset it asks an interactive
`[y/N]` question, which reads a piped stdin as the answer. orch therefore always passes an explicit bool, and first
reads `config.json` / `tokenizer_config.json` itself: a folder whose `auto_map` names code that this transformers
has no built-in class for, loaded without the key or flag, stops with one line (`ConfigError`, exit 2) before any
weights load. A folder whose `model_type` transformers knows loads its built-in class, as transformers itself does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ConfigError

CONFIG_KEY = "`trust_remote_code: true` in the training config (or --trust-remote-code)"
CLI_FLAG = "--trust-remote-code"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _code_file(reference: object) -> str | None:
    """`modeling_x.ClassName` (or `[slow, fast]`, or `repo--module.Class`) -> `modeling_x.py`."""
    if isinstance(reference, (list, tuple)):
        reference = next((r for r in reference if r), None)
    if not isinstance(reference, str) or "." not in reference:
        return None
    return reference.split("--")[-1].rsplit(".", 1)[0] + ".py"


def _model_code(folder: Path) -> list[str]:
    """Code files the model's config/class would run: none when transformers has the model_type built in."""
    config = _read_json(folder / "config.json")
    auto_map = config.get("auto_map") or {}
    if not isinstance(auto_map, dict) or not auto_map:
        return []
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if config.get("model_type") in CONFIG_MAPPING:
        return []
    return sorted({f for f in map(_code_file, auto_map.values()) if f})


def _tokenizer_code(folder: Path) -> list[str]:
    """Code files the tokenizer would run: none when its `tokenizer_class` is one transformers has."""
    config = _read_json(folder / "tokenizer_config.json")
    auto_map = config.get("auto_map") or {}
    reference = auto_map.get("AutoTokenizer") if isinstance(auto_map, dict) else None
    if not reference:
        return []
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    name = config.get("tokenizer_class")
    if isinstance(name, str) and (tokenizer_class_from_name(name) or tokenizer_class_from_name(name + "Fast")):
        return []
    return [f for f in [_code_file(reference)] if f]


def custom_code(model: str | Path | None = None, tokenizer: str | Path | None = None) -> list[str]:
    """The `.py` files that loading the model folder `model` (its config and class) and the tokenizer folder
    `tokenizer` would run, as `folder/file.py`."""
    found: list[str] = []
    for folder, reader in ((model, _model_code), (tokenizer, _tokenizer_code)):
        path = Path(folder).expanduser() if folder is not None else None
        if path is not None and path.is_dir():
            found += [str(path / name) for name in reader(path) if str(path / name) not in found]
    return found


def require_trust(trust: bool, how: str = CLI_FLAG, model: str | Path | None = None,
                  tokenizer: str | Path | None = None) -> bool:
    """Return `trust` when the folders load with it; else raise one line naming the code files and `how`."""
    if trust:
        return True
    files = custom_code(model, tokenizer)
    if files:
        raise ConfigError(f"{Path(files[0]).parent}: ships its own code ({', '.join(Path(f).name for f in files)}), "
                          f"which runs only with {how}; set it if you trust that code")
    return False


def missing_imports(folder: str | Path) -> dict[str, list[str]]:
    """Packages the folder's own code files import that this env lacks: {package: [files importing it]}.

    The imports of each file are transformers' own reading of it (`dynamic_module_utils.get_imports`, which leaves
    out imports guarded by try/except, as `check_imports` does when loading); each is looked up without being
    imported. A folder without `.py` files has none."""
    import importlib.util

    files = sorted(Path(folder).expanduser().glob("*.py"))
    if not files:
        return {}
    from transformers.dynamic_module_utils import get_imports

    missing: dict[str, list[str]] = {}
    for path in files:
        for name in get_imports(str(path)):
            if importlib.util.find_spec(name) is None:
                missing.setdefault(name, []).append(path.name)
    return missing


def missing_imports_line(folder: str | Path, missing: dict[str, list[str]], where: str = "in this env") -> str:
    """One line naming what `missing_imports` found."""
    names = sorted(missing)
    files = sorted({f for users in missing.values() for f in users})
    return (f"{folder}: the model's own code ({', '.join(files)}) imports {', '.join(names)}, not installed "
            f"{where}: pip install {' '.join(names)}")


def require_imports(folder: str | Path) -> None:
    """ConfigError naming the packages the folder's code imports that this env lacks (before anything loads)."""
    missing = missing_imports(folder) if Path(folder).expanduser().is_dir() else {}
    if missing:
        raise ConfigError(missing_imports_line(folder, missing))


@dataclass(frozen=True)
class KnownBreak:
    """A model's own code that fails from a transformers release on: for `what` (loading, or generation only), how,
    and what works; `unless` (file, text): only when that code file lacks that text (an older revision)."""

    model_type: str
    name: str
    since: tuple[int, ...]
    what: str
    how: str
    works: str
    unless: tuple[str, str] | None = None


KNOWN_BREAKS = (
    KnownBreak("qwen", "Qwen v1 (Qwen-7B/14B-Chat)", (4, 34), "loading", "this revision's tokenization_qwen.py "
               "reads its vocabulary inside the base class's __init__, before setting it (\"'QWenTokenizer' object "
               "has no attribute 'mergeable_ranks'\")", "transformers < 4.34, or with tokenization_qwen.py from the "
               "current Qwen-7B-Chat revision (it overrides _add_tokens)",
               unless=("tokenization_qwen.py", "def _add_tokens")),
    KnownBreak("qwen", "Qwen v1 (Qwen-7B/14B-Chat)", (5,), "loading", "its code uses what transformers 5 removed: "
               "DisjunctiveConstraint, the slow tokenizer's special-token internals", "transformers 4.40-4.44"),
    KnownBreak("chatglm", "ChatGLM3-6B", (5,), "loading", 'its config code fails ("ChatGLMConfig has no '
               'max_length")', "transformers 4.40-4.44"),
    KnownBreak("chatglm", "ChatGLM3-6B", (4, 42), "generation", "its own generate() calls "
               "standardize_cache_format, which transformers 4.42 removed",
               "transformers 4.40-4.41 for chat, serve and generation eval"),
)


def _applies(rule: KnownBreak, folder: Path, model_type: object, installed: tuple[int, ...],
             generating: bool) -> bool:
    if model_type != rule.model_type or installed < rule.since or not (rule.what == "loading" or generating):
        return False
    if rule.unless is None:
        return True
    try:
        return rule.unless[1] not in (folder / rule.unless[0]).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def known_break(folder: str | Path, generating: bool = False) -> str | None:
    """One line when the model folder's own code is known not to run on the installed transformers (for loading;
    with `generating`, also for generate()), naming the model, the version and what works; else None."""
    from orchestrator.train.compat import version

    path = Path(folder).expanduser()
    config = _read_json(path / "config.json")
    if not config.get("auto_map"):
        return None
    installed = version("transformers")
    for rule in KNOWN_BREAKS:
        if _applies(rule, path, config.get("model_type"), installed, generating):
            found = ".".join(map(str, installed))
            return (f"{folder}: {rule.name}'s own code is known not to run on transformers {found} ({rule.what}: "
                    f"{rule.how}); it works on {rule.works}")
    return None


def warn_known_break(folder: str | Path, generating: bool = False) -> None:
    """Print `known_break`'s line on stderr (rank 0), before anything loads."""
    import os
    import sys

    line = known_break(folder, generating)
    if line and os.environ.get("RANK", "0") == "0":
        print(f"warning: {line}", file=sys.stderr, flush=True)
