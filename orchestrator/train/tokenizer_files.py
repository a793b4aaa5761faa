"""Tokenizers that do not survive `save_pretrained`: take the base model's, as ChatGLM3's guide does.

ChatGLM3's tokenizer (transformers 4.40-4.44) writes `eos_token` into the tokenizer_config.json it saves, and its
`eos_token` is a read-only property, so the saved copy never loads again. The guide's inference script loads the
tokenizer from `base_model_name_or_path`; orch does the same whenever a folder's own copy does not load, and after
training or merging puts the base's tokenizer files where the saved copy would not load, so the folder stands alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "tokenizer.json")


def has_tokenizer(folder: str | Path) -> bool:
    """Whether `folder` holds a tokenizer of its own (saved beside an adapter, say)."""
    return any((Path(folder) / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))


def load_tokenizer_from(folder: str | Path, base: str | Path | None, trust: bool) -> tuple[Any, Path]:
    """The tokenizer of `folder`, or `base`'s when `folder` has none or its copy fails to load; (tokenizer, from)."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    if base is None or Path(base) == folder:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust), folder
    if has_tokenizer(folder):
        try:
            return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust), folder
        except Exception:  # noqa: BLE001 - any failure of the saved copy's own code: the base's is the original
            pass
    return AutoTokenizer.from_pretrained(str(base), trust_remote_code=trust), Path(base)


def restore_if_unloadable(out: str | Path, base: str | Path, trust: bool) -> bool:
    """When the tokenizer saved in `out` fails to load, put the base's tokenizer files there; True if it did."""
    from transformers import AutoTokenizer

    try:
        AutoTokenizer.from_pretrained(str(out), trust_remote_code=trust)
        return False
    except Exception:  # noqa: BLE001 - see load_tokenizer_from
        pass
    out, base = Path(out), Path(base)
    names = set(TOKENIZER_FILES) | _vocab_file_names(base, trust)
    for name in names:
        if (base / name).is_file():
            shutil.copy2(base / name, out / name)
        elif name in TOKENIZER_FILES:
            (out / name).unlink(missing_ok=True)
    return True


def _vocab_file_names(base: Path, trust: bool) -> set[str]:
    """The vocabulary files the base's tokenizer class reads (ChatGLM3: tokenizer.model)."""
    from transformers import AutoTokenizer

    try:
        return set(type(AutoTokenizer.from_pretrained(str(base), trust_remote_code=trust)).vocab_files_names.values())
    except Exception:  # noqa: BLE001 - nothing more to copy than the config files
        return set()
