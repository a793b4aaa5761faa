"""The token cache: content-addressed keys, the build lock, where it lives and its size bound.

An index is built once, by whichever process takes the lock first. Other processes (ranks on the same node, or on
other nodes over a shared filesystem) block on the file lock, never on a torch collective, and then find the
finished index. Keys hash file contents (memoised by path, size and mtime), never paths: the same data from the
project folder, a job's code snapshot or a restart maps to one cache entry. The cache lives in `$ORCH_DATA_CACHE`,
else `<workdir>/data-cache` on a node orch launched on (shared by every job there), else `$ORCH_HOME/data-cache`
(private: 600/700); it is kept under `$ORCH_DATA_CACHE_GB` (default 20) by evicting the least recently used entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

INDEX_FORMAT = 1
DEFAULT_LIMIT_GB = 20.0
USED_STAMP = ".last_used"


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
        vocab = sorted((_vocab_key(token), tid) for token, tid in tokenizer.get_vocab().items())
        digest.update(json.dumps(vocab, ensure_ascii=False).encode())
        digest.update(json.dumps(sorted(str(t) for t in tokenizer.all_special_tokens)).encode())
    digest.update(json.dumps([tokenizer.eos_token, tokenizer.chat_template or ""]).encode())
    value = digest.hexdigest()
    with contextlib.suppress(AttributeError):
        tokenizer._orch_hash = value
    return value


def _vocab_key(token: str | bytes) -> str:
    """A vocabulary key as text: tiktoken-style vocabularies (Qwen v1's) have `bytes` keys."""
    return "bytes:" + token.hex() if isinstance(token, bytes) else token


TOKENIZER_FILE_SUFFIXES = (".json", ".txt", ".model", ".py", ".jinja", ".tiktoken")


def tokenizer_files_hash(folder: Path) -> str:
    """Content hash of the small files of a tokenizer folder (vocabulary, merges, configs, code; not weights):
    what can tell an index is up to date without loading the tokenizer."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).iterdir()):
        if path.is_file() and path.suffix in TOKENIZER_FILE_SUFFIXES and not path.name.endswith(".index.json"):
            digest.update(path.name.encode() + b"\0" + file_sha256(path).encode())
    return digest.hexdigest()


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
    """`$ORCH_DATA_CACHE`; on a node orch launched on, `<workdir>/data-cache` (beside `<workdir>/outputs`); else
    `$ORCH_HOME/data-cache` (default `$XDG_STATE_HOME/orch/data-cache`)."""
    if os.environ.get("ORCH_DATA_CACHE"):
        return Path(os.environ["ORCH_DATA_CACHE"])
    if os.environ.get("ORCH_OUTPUT_ROOT"):  # <workdir>/outputs/<project>
        return Path(os.environ["ORCH_OUTPUT_ROOT"]).parent.parent / "data-cache"
    return _orch_home() / "data-cache"


def _orch_home() -> Path:
    """orch's state folder (`orchestrator.paths`, which the worker does not ship): $ORCH_HOME, else
    `$XDG_STATE_HOME/orch`."""
    if os.environ.get("ORCH_HOME"):
        return Path(os.environ["ORCH_HOME"])
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "orch"


@contextlib.contextmanager
def private_inside(folder: Path) -> Iterator[None]:
    """Meanwhile, what this process creates is 600/700 if `folder` is inside orch's state folder (the cache under
    $ORCH_HOME, private like the rest of it); elsewhere (a node's workdir, $ORCH_DATA_CACHE) the umask stands."""
    if not Path(folder).resolve().is_relative_to(_orch_home().resolve()):
        yield
        return
    umask = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(umask)


def content_hash(path: Path, cache_dir: Path) -> str:
    """SHA-256 of a file's content, memoised in `cache_dir/.hashes` by its path, size and mtime."""
    memo = cache_dir / ".hashes" / hashlib.sha256(json.dumps(stat_id(path)).encode()).hexdigest()[:32]
    try:
        return memo.read_text().strip()
    except OSError:
        pass
    value = file_sha256(path)
    memo.parent.mkdir(parents=True, exist_ok=True)
    tmp = memo.with_name(f"{memo.name}.{os.getpid()}")
    tmp.write_text(value)
    os.replace(tmp, memo)
    return value


def mark_used(entry: Path) -> None:
    """Record that a cache entry (an index folder or a file) was just used, for least-recently-used eviction."""
    stamp = entry / USED_STAMP if entry.is_dir() else entry.with_name(f".{entry.name}{USED_STAMP}")
    with contextlib.suppress(OSError):
        stamp.touch()


def _last_used(entry: Path) -> float:
    """When a cache entry was last used (its stamp, else its own mtime)."""
    stamp = entry / USED_STAMP if entry.is_dir() else entry.with_name(f".{entry.name}{USED_STAMP}")
    for candidate in (stamp, entry):
        with contextlib.suppress(OSError):
            return candidate.stat().st_mtime
    return 0.0


def _size(entry: Path) -> int:
    """Bytes under a cache entry."""
    if entry.is_file():
        return entry.stat().st_size
    return sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())


def limit_bytes() -> int:
    """The cache's size bound: `$ORCH_DATA_CACHE_GB` GiB (default 20)."""
    return int(float(os.environ.get("ORCH_DATA_CACHE_GB") or DEFAULT_LIMIT_GB) * (1 << 30))


def evict(cache_dir: Path, keep: set[Path], limit: int | None = None) -> list[Path]:
    """Remove the least recently used entries of `cache_dir` (never those in `keep`, nor one being built) until it
    holds at most `limit` bytes; returns what was removed."""
    limit = limit_bytes() if limit is None else limit
    if not cache_dir.is_dir():
        return []
    entries = [p for p in cache_dir.iterdir() if not p.name.startswith(".")]
    sizes = {p: _size(p) for p in entries}
    total, removed = sum(sizes.values()), []
    for entry in sorted(entries, key=_last_used):
        if total <= limit:
            break
        if entry.resolve() in keep or not _try_remove(entry):
            continue
        total -= sizes[entry]
        removed.append(entry)
    return removed


def _try_remove(entry: Path) -> bool:
    """Remove a cache entry unless another process holds its build lock."""
    lock_path = entry.parent / f".{entry.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            for sidecar in (entry, *entry.parent.glob(f".{entry.name}.*")):  # used stamp, line map
                sidecar.unlink(missing_ok=True)
        return True
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
