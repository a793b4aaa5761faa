"""Text files as users bring them from other machines: UTF-8 with or without a byte-order mark, UTF-16/32 with one,
or a named legacy encoding (GBK, GB18030, Big5, ...). Everything is decoded to `str`; what orch writes is UTF-8.

Without a named encoding a file must be UTF-8 (a BOM selects UTF-8, UTF-16 or UTF-32; a BOM always wins over a
named encoding). Bytes that do not decode are refused in one line: file, line, byte offset, and the encoding they
do decode as (`encoding: gb18030`), never a `UnicodeDecodeError`. Lines end at `\\n` only (CRLF files read like LF
files once callers strip `\\r\\n`), so line numbers agree with every byte-wise reader.
"""

from __future__ import annotations

import codecs
import itertools
from collections.abc import Iterator
from pathlib import Path

from orchestrator.errors import DataError, located

_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_WIDE = ("utf-16", "utf-32")  # codec families whose newline is not the byte 0x0a
_GUESS_BYTES = 4 << 20  # how much of a file the suggestion decodes
_CHUNK = 4 << 20
CONFIG_MAX_BYTES = 1 << 20  # configs and inventories are read whole, by pure-Python parsers (~0.2-1 MB/s)
EXAMPLES = "e.g. gb18030, gbk, big5, utf-16"
# frequent Han characters, simplified and traditional: which of two decodings that both succeed reads as Chinese
_COMMON_HAN = frozenset("的一是不了在人有我他這这個个們们中來来上大為为和國国地到以說说時时要就出會会可也你對对生能而子那得"
                        "於于著着下自之年過过發发後后作裡里用道行所然家種种事成方多經经麼么去法學学如都同現现當当沒没動动"
                        "面起看定天分還还進进好小部其些主樣样理心她本前開开把但因只從从想實实問问答題题")


def found(path: str | Path, kind: str = "any") -> bool:
    """Whether `path` names an existing file (`kind` "file"), folder ("dir") or either; a name the OS cannot look
    up at all (too long, a NUL byte: what a mangled config holds) is simply not found."""
    try:
        path = Path(path)
        return path.is_file() if kind == "file" else path.is_dir() if kind == "dir" else path.exists()
    except (OSError, ValueError):
        return False


def check_encoding(name: str, where: str) -> str:
    """The codec name of a text encoding the user named; DataError for an unknown name or a non-text codec."""
    try:
        info = codecs.lookup(name)
    except (LookupError, TypeError, ValueError):
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise DataError(f"{where}: unknown text encoding {name!r} ({EXAMPLES})")
    return info.name


def codec_of(head: bytes, encoding: str | None = None) -> str:
    """The codec to read a file starting with `head`: its BOM's, else the named encoding, else UTF-8."""
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec
    if encoding is None:
        return "utf-8"
    codec = check_encoding(encoding, "encoding")
    return "utf-8-sig" if codec == "utf-8" else codec


def _is_wide(codec: str) -> bool:
    return codec.startswith(_WIDE)


def _head(path: Path, size: int = 4) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(size)


def guess_encoding(data: bytes) -> str | None:
    """What undecodable-as-UTF-8 bytes decode as: utf-16-le/-be (NULs between ASCII), gb18030 (covers GBK) or big5
    (whichever yields more common Chinese characters when both decode), or None."""
    if len(data) >= _GUESS_BYTES:
        data = data[: data.rfind(b"\n", 0, _GUESS_BYTES) + 1 or _GUESS_BYTES]
    nul_even, nul_odd = data[0::2].count(0), data[1::2].count(0)
    if data and max(nul_even, nul_odd) > len(data) // 8:
        return "utf-16-le" if nul_odd > nul_even else "utf-16-be"
    scores = {}
    for codec in ("gb18030", "big5"):
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        scores[codec] = sum(text.count(c, 0, 1 << 18) for c in _COMMON_HAN)
    return max(scores, key=scores.get) if scores else None


def refusal(path: Path, line: int, offset: int, codec: str, named: str | None, option: bool = True) -> DataError:
    """The one-line error for bytes that do not decode, with the encoding to try (`option`: the file is read
    with an encoding the user can name; else it must be saved as UTF-8)."""
    if named:
        return DataError(located(str(path), line, f"not valid {named} text (byte offset {offset}); check the "
                                                  f"file's encoding"))
    with open(path, "rb") as fh:
        guess = guess_encoding(fh.read(_GUESS_BYTES + 1))
    what = "UTF-8" if codec.startswith("utf-8") else codec.upper()
    if not option:
        hint = f"save it as UTF-8{f' (it decodes as {guess})' if guess else ''}"
    elif guess:
        hint = f"it decodes as {guess}: try encoding: {guess} (--encoding {guess} on the command line)"
    else:
        hint = f"name its encoding with encoding: NAME in the data entry or --encoding NAME ({EXAMPLES})"
    return DataError(located(str(path), line, f"not {what} text (byte offset {offset}); {hint}"))


def decode(raw: bytes, codec: str) -> str:
    """Decode a line's bytes; a NUL byte counts as undecodable (text has none; UTF-16 without a BOM is full of them)."""
    nul = raw.find(b"\0")
    if nul >= 0:
        raise UnicodeDecodeError(codec, raw, nul, nul + 1, "a NUL byte in text")
    return raw.decode(codec)


def iter_lines(path: str | Path, encoding: str | None = None) -> Iterator[tuple[int, str]]:
    """(line number, decoded line with its `\\n`) of a text file; a leading BOM is dropped."""
    path = Path(path)
    codec = codec_of(_head(path), encoding)
    if _is_wide(codec):
        yield from _wide_lines(path, encoding)
        return
    after_first = codec.replace("-sig", "")  # a BOM can only open the file
    with open(path, "rb") as fh:
        offset, n = 0, 0
        for n, raw in enumerate(fh, 1):
            try:
                text = decode(raw, codec if n == 1 else after_first)
            except UnicodeDecodeError as exc:
                raise refusal(path, n, offset + exc.start, codec, encoding) from None
            yield n, text.lstrip("\ufeff") if n == 1 else text
            offset += len(raw)


def _wide_lines(path: Path, encoding: str | None) -> Iterator[tuple[int, str]]:
    """Lines of a UTF-16/32 file, decoded whole (such files come from editors, not from data pipelines)."""
    text, pos = read_text(path, encoding), 0
    for n in itertools.count(1):
        end = text.find("\n", pos) + 1 or len(text)
        if pos >= end:
            return
        yield n, text[pos:end]
        pos = end


def read_config_text(path: str | Path) -> str:
    """A config file (YAML, TOML): UTF-8 (a BOM is fine), at most CONFIG_MAX_BYTES; refused in one line else."""
    size = Path(path).stat().st_size
    if size > CONFIG_MAX_BYTES:
        raise DataError(located(str(path), None, f"{size:,} bytes is too large for a config file (at most "
                                                 f"{CONFIG_MAX_BYTES:,}): is it a data file?"))
    return read_text(path, option=False)


def read_text(path: str | Path, encoding: str | None = None, option: bool = True) -> str:
    """A whole text file decoded (BOM dropped); refused in one line when it does not decode (`option`: whether
    the user can name the file's encoding, else the hint is to save it as UTF-8)."""
    path = Path(path)
    data = path.read_bytes()
    codec = codec_of(data[:4], encoding)
    try:
        return data.decode(codec).lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        start = exc.start + (len(codecs.BOM_UTF8) if codec == "utf-8-sig" and data.startswith(codecs.BOM_UTF8) else 0)
        line = data[:start].decode(codec, "replace").count("\n") + 1
        raise refusal(path, line, start, codec, encoding, option) from None


def head_text(path: str | Path, size: int = 65536, encoding: str | None = None) -> str:
    """The start of a file, decoded leniently (for sniffing a file's kind, never for its content)."""
    with open(path, "rb") as fh:
        data = fh.read(size)
    try:
        codec = codec_of(data[:4], encoding)
    except DataError:
        codec = "utf-8"
    return data.decode(codec, "replace").lstrip("\ufeff")


def is_plain_utf8(path: str | Path, encoding: str | None = None) -> bool:
    """Whether a file is read as UTF-8 without a BOM (its bytes can be used as they are once validated)."""
    return encoding is None and codec_of(_head(Path(path))) == "utf-8"


def copy_as_utf8(src: str | Path, dst: str | Path, encoding: str | None = None) -> None:
    """Write `src` to `dst` as UTF-8 without a BOM, line for line; refused in one line when it does not decode."""
    src = Path(src)
    if not is_plain_utf8(src, encoding):
        with open(dst, "w", encoding="utf-8", newline="") as out:
            for _, text in iter_lines(src, encoding):
                out.write(text)
        return
    with open(src, "rb") as fh, open(dst, "wb") as out:
        carry, start, lines = b"", 0, 1  # undecoded tail, its file offset, newlines before it + 1
        while True:
            chunk = fh.read(_CHUNK)
            buf = carry + chunk
            try:
                if b"\0" in buf:
                    decode(buf, "utf-8")
                _, used = codecs.utf_8_decode(buf, "strict", not chunk)
            except UnicodeDecodeError as exc:
                line = lines + buf.count(b"\n", 0, exc.start)
                raise refusal(src, line, start + exc.start, "utf-8", None) from None
            out.write(chunk)
            lines += buf.count(b"\n", 0, used)
            carry, start = buf[used:], start + used
            if not chunk:
                return
