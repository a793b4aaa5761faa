"""Small pieces of serving: stop strings, incremental decoding, and finding what to load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.serve.errors import ServeError
from orchestrator.serve.loader import resolve_source
from orchestrator.serve.stops import StopMatcher


def feed_all(matcher: StopMatcher, pieces: list[str]) -> str:
    return "".join(matcher.feed(p) for p in pieces) + matcher.flush()


def test_stop_string_split_across_pieces_is_cut_and_never_shown() -> None:
    matcher = StopMatcher(["###"])
    shown = [matcher.feed(p) for p in ["Hello #", "#", "# world"]]
    assert shown == ["Hello ", "", ""]
    assert matcher.stopped and matcher.flush() == ""


def test_text_that_only_looks_like_a_stop_start_is_released() -> None:
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("a ST") == "a "
    assert matcher.feed("ART") == "START"
    assert matcher.feed(" S") == " "
    assert matcher.flush() == "S" and not matcher.stopped


def test_earliest_of_several_stops_wins() -> None:
    assert feed_all(StopMatcher(["c", "b"]), ["abcd"]) == "a"
    assert feed_all(StopMatcher([]), ["ab", "cd"]) == "abcd"


def test_incremental_decoding_rebuilds_mixed_chinese_and_english(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    from orchestrator.serve.detok import IncrementalDecoder

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    text = "Hello world! 你好，我是一个乐于助人的助手。 LoRA trains 2 small matrices."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.push(i) for i in ids]
    pieces.append(decoder.flush())
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces), "no piece may end inside a multi-byte character"


def test_model_folder_and_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    assert resolve_source(tmp_path).adapter is None
    with pytest.raises(ServeError, match="not found"):
        resolve_source(tmp_path / "nope")
    with pytest.raises(ServeError, match="only for adapter"):
        resolve_source(tmp_path, base=tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ServeError, match="neither a model folder"):
        resolve_source(empty)


def test_adapter_base_comes_from_its_config_or_the_override(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    source = resolve_source(adapter)
    assert (source.base, source.adapter, source.tokenizer) == (base, adapter, base)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/moved/away"}))
    with pytest.raises(ServeError, match="--base"):
        resolve_source(adapter)
    assert resolve_source(adapter, base=base).base == base


def test_stray_bytes_are_released_instead_of_held_forever(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    from orchestrator.serve.detok import IncrementalDecoder

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    stray = tokenizer.convert_tokens_to_ids("Ģ")  # byte-level BPE's symbol for the lone byte 0x80
    ids = [stray] * 20 + tokenizer("ok", add_special_tokens=False)["input_ids"]
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.push(i) for i in ids]
    assert "".join(pieces[:12]), "an answer of stray bytes must not stay invisible until the end"
    assert "".join(pieces) + decoder.flush() == tokenizer.decode(ids)
