"""The token index: meta.json keys, random access, parallel == serial, caching, build-once locking, bad input."""

from __future__ import annotations

import json
import multiprocessing
import os

import numpy as np
import pytest

from orchestrator.errors import DataError
from orchestrator.train.data.index import TokenIndex, build_index
from orchestrator.train.data.meta import META_KEYS
from orchestrator.train.data.readers import read_samples
from orchestrator.train.data.encoding import encode

RECORDS = [
    {"messages": [{"role": "user", "content": f"问题 {i} question"},
                  {"role": "assistant", "content": "回答 answer " * (1 + i % 7)}]}
    for i in range(60)
] + [{"text": "预训练 pretraining text " * 3}]


def _write(path, records=RECORDS):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_index_has_exact_meta_keys_and_random_access_matches_encode(tmp_path, tokenizer):
    src = _write(tmp_path / "in" / "chat.jsonl")
    record = build_index(src, tmp_path / "idx", tokenizer, template="chatml", language="zh", workers=1)
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text(encoding="utf-8"))
    assert tuple(meta) == META_KEYS
    assert meta["nlines"] == len(RECORDS) and meta["nbytes"] == src.stat().st_size and meta["language"] == "zh"
    assert meta["length_distribute"]["less_4k"] == len(RECORDS) and len(meta["length_distribute"]) == 8
    assert meta["data_sample"] == RECORDS[0]
    assert (tmp_path / "idx" / "data.jsonl").read_bytes() == src.read_bytes()
    index = TokenIndex(tmp_path / "idx")
    samples, _ = read_samples(src)
    assert meta["avg_token_per_line"] == round(index.lengths.mean(), 2) and record["tokens"] == index.lengths.sum()
    for i in (0, 37, len(RECORDS) - 1):
        ids, mask = index[i]
        ref_ids, ref_labels = encode(samples[i], tokenizer, "chatml")
        assert ids.tolist() == ref_ids and [int(m) for m in mask] == [int(lab != -100) for lab in ref_labels]


def test_parallel_build_equals_serial_build(tmp_path, tokenizer):
    src = _write(tmp_path / "in" / "chat.jsonl")
    build_index(src, tmp_path / "serial", tokenizer, template="chatml", workers=1)
    build_index(src, tmp_path / "par", tokenizer, template="chatml", workers=2, chunk_bytes=500)
    for name in ("tokens.bin", "loss_mask.bin", "offsets.bin", "lines.bin", "meta.json"):
        assert (tmp_path / "serial" / name).read_bytes() == (tmp_path / "par" / name).read_bytes(), name


def test_rerun_is_cached_and_a_changed_input_rebuilds(tmp_path, tokenizer):
    src = _write(tmp_path / "in" / "chat.jsonl")
    out = tmp_path / "idx"
    assert build_index(src, out, tokenizer, workers=1)["cached"] is False
    stamp = (out / "tokens.bin").stat().st_mtime_ns
    assert build_index(src, out, tokenizer, workers=1)["cached"] is True
    assert (out / "tokens.bin").stat().st_mtime_ns == stamp
    assert build_index(src, out, tokenizer, template="chatml", workers=1, language="en")["cached"] is False
    _write(src, RECORDS[:5])
    rebuilt = build_index(src, out, tokenizer, template="chatml", workers=1, language="en")
    assert rebuilt["cached"] is False and len(TokenIndex(out)) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == [".idx.lock", "idx", "in"]


def _build_in_child(args):
    src, out, tokenizer_dir = args
    from transformers import AutoTokenizer

    return build_index(src, out, AutoTokenizer.from_pretrained(tokenizer_dir), workers=1)["cached"]


def test_concurrent_builders_build_once(tmp_path, tiny_model):
    src = _write(tmp_path / "in" / "chat.jsonl")
    with multiprocessing.get_context("fork").Pool(3) as pool:
        cached = pool.map(_build_in_child, [(src, tmp_path / "idx", str(tiny_model))] * 3)
    assert sorted(cached) == [False, True, True]


def test_output_folder_must_differ_from_input_folder(tmp_path, tokenizer):
    src = _write(tmp_path / "chat.jsonl")
    with pytest.raises(DataError, match="output folder must differ from the input folder"):
        build_index(src, tmp_path, tokenizer)


def test_bad_line_leaves_nothing_half_written_and_skip_bad_counts(tmp_path, tokenizer):
    records = RECORDS[:10] + [{"messages": [{"role": "assistant", "content": "x"}]}] + RECORDS[10:20]
    src = _write(tmp_path / "in" / "chat.jsonl", records)
    with open(src, "a", encoding="utf-8") as fh:
        fh.write("{not json\n")
    with pytest.raises(DataError, match=r"chat\.jsonl:11: message 0: wrong role order"):
        build_index(src, tmp_path / "idx", tokenizer, workers=2, chunk_bytes=300)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".idx.lock", "in"]
    record = build_index(src, tmp_path / "idx", tokenizer, workers=2, chunk_bytes=300, skip_bad=True)
    assert record["skipped_bad"] == 2 and record["samples"] == 20
    assert any("chat.jsonl:22: malformed JSON" in e for e in record["bad_examples"])
    assert np.fromfile(tmp_path / "idx" / "lines.bin", dtype=np.int64)[10] == 12


def test_json_list_and_txt_inputs_report_original_lines(tmp_path, tokenizer):
    src = tmp_path / "in" / "train.json"
    src.parent.mkdir()
    src.write_text('[\n{"input": "问", "output": "答"},\n\n{"input": "q"}\n]', encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.json:4: missing or non-string field 'output'"):
        build_index(src, tmp_path / "idx", tokenizer, workers=1)
    txt = tmp_path / "in" / "c.txt"
    txt.write_text("一\n\ntwo\n", encoding="utf-8")
    build_index(txt, tmp_path / "idx", tokenizer, workers=1)
    assert json.loads((tmp_path / "idx" / "meta.json").read_text())["nlines"] == 2
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
