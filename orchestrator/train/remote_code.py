"""Models and tokenizers that ship their own code (ChatGLM3, Qwen-7B-Chat v1, FM9G): decide before loading.

transformers runs a folder's own `.py` files only with `trust_remote_code=True`; left unset it asks an interactive
`[y/N]` question, which reads a piped stdin as the answer. orch therefore always passes an explicit bool, and first
reads `config.json` / `tokenizer_config.json` itself: a folder whose `auto_map` names code that this transformers
has no built-in class for, loaded without the key or flag, stops with one line (`ConfigError`, exit 2) before any
weights load. A folder whose `model_type` transformers knows loads its built-in class, as transformers itself does.
"""

from __future__ import annotations

import json
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
