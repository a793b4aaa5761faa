"""Cache keys and the build lock: an index is built once, by whichever process takes the lock first.

Other processes (ranks on the same node, or on other nodes over a shared filesystem) block on the file lock,
never on a torch collective, and then find the finished index. Input hashes are memoised by (size, mtime).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

INDEX_FORMAT = 1


def file_sha256(path: Path) -> str:
    """Content hash of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def stat_id(path: Path) -> dict:
    """What must not change for a memoised content hash to stay valid."""
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def input_hash(path: Path, previous: dict | None) -> str:
    """Content hash of `path`, reused from a previous build record when the file's stat is unchanged."""
    if previous and previous.get("input_stat") == stat_id(path) and previous.get("input_sha256"):
        return previous["input_sha256"]
    return file_sha256(path)


def tokenizer_hash(tokenizer) -> str:
    """Identity of a tokenizer: its serialised vocabulary/merges (a slow tokenizer: class, vocabulary and added
    tokens), special tokens and chat template."""
    cached = getattr(tokenizer, "_orch_hash", None)
    if cached:
        return cached
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest = hashlib.sha256(backend.to_str().encode())
    else:
        digest = hashlib.sha256(type(tokenizer).__qualname__.encode())
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode())
        digest.update(json.dumps(sorted(str(t) for t in tokenizer.all_special_tokens)).encode())
    digest.update(json.dumps([tokenizer.eos_token, tokenizer.chat_template or ""]).encode())
    value = digest.hexdigest()
    with contextlib.suppress(AttributeError):
        tokenizer._orch_hash = value
    return value


def settings_key(**settings: object) -> str:
    """A stable hash of the build settings (input hash, tokenizer hash, template, ...)."""
    blob = json.dumps({"format": INDEX_FORMAT, **settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def read_record(folder: Path) -> dict | None:
    """The build record (`orch_index.json`) of an index folder, or None."""
    try:
        return json.loads((folder / "orch_index.json").read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def build_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive lock on `<parent>/.<name>.lock` while building `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def default_cache_dir() -> Path:
    """`$ORCH_DATA_CACHE`, else `$XDG_CACHE_HOME/orch/data` (default `~/.cache/orch/data`)."""
    if os.environ.get("ORCH_DATA_CACHE"):
        return Path(os.environ["ORCH_DATA_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "orch" / "data"
