"""A tokenizer without an EOS or pad token (Qwen-7B-Chat v1's: `eos_token` is None, its end-of-document token
`<|endoftext|>` is only an id, `eod_id`): give it the model's end-of-document token as both, and say so in one line.

Training (plain-text samples end with EOS; padding; DPO's `pad_token_id`), `orch data index|preview` (the same
cache key as training) and serving (the stop token) all load tokenizers through this.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def end_of_document_id(tokenizer, folder: str | Path | None) -> int | None:
    """The model's end-of-document id: the tokenizer's own `eod_id` (Qwen v1), else `eos_token_id` of the folder's
    config.json or generation_config.json (the first when a list)."""
    own = getattr(tokenizer, "eod_id", None)
    if isinstance(own, int):
        return own
    for name in ("config.json", "generation_config.json"):
        try:
            value = json.loads((Path(folder) / name).read_text(encoding="utf-8")).get("eos_token_id")
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        value = value[0] if isinstance(value, list) and value else value
        if isinstance(value, int):
            return value
    return None


def fill_eos_and_pad(tokenizer, folder: str | Path | None = None, quiet: bool = False):
    """Set a missing EOS token to the model's end-of-document token, and a missing pad token to the EOS token;
    prints one line on stderr (rank 0 only; not when `quiet`) when the EOS token was filled in. Returns the
    tokenizer."""
    if tokenizer.eos_token is None:
        eod = end_of_document_id(tokenizer, folder if folder is not None else tokenizer.name_or_path)
        token = tokenizer.convert_ids_to_tokens(eod) if eod is not None else None
        if isinstance(token, str) and token:
            tokenizer.eos_token = token
            if not quiet and os.environ.get("RANK", "0") == "0":
                print(f"note: the tokenizer has no eos or pad token; using the model's end-of-document token "
                      f"{token} (id {eod}) as both", file=sys.stderr, flush=True)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
