"""build_sft_datasets: truncation strategies with counts, eval split, pt stage, index folders and mixtures."""

from __future__ import annotations

import json

import pytest

from orchestrator.errors import DataError
from orchestrator.train.data.dataset import build_sft_datasets
from orchestrator.train.data.index import build_index
from orchestrator.train.data.spec import DataSpec

SAMPLE = "orchestrator/sample_data/chat_zh_en.jsonl"


def _lengths(ds):
    return [len(ds[i]["input_ids"]) for i in range(len(ds))]


def _spec(tmp_path, **kw):
    return DataSpec(train=[SAMPLE], base_dir=".", cache_dir=str(tmp_path / "cache"), **kw)


@pytest.mark.parametrize("strategy", ["delete", "left", "right"])
def test_truncation_strategies_and_counts(tmp_path, tokenizer, strategy):
    full, _, _ = build_sft_datasets(_spec(tmp_path, max_length=4096), tokenizer)
    lengths = _lengths(full)
    limit = sorted(lengths)[len(lengths) // 2]
    over = sum(n > limit for n in lengths)
    ds, _, report = build_sft_datasets(_spec(tmp_path, max_length=limit, truncation_strategy=strategy), tokenizer)
    assert report.truncated[strategy] == over and f"'{strategy}': {over} sample(s)" in report.summary()
    assert max(_lengths(ds)) <= limit
    assert len(ds) + report.dropped_no_loss == (len(full) - over if strategy == "delete" else len(full))
    for i in range(len(ds)):
        assert any(label != -100 for label in ds[i]["labels"])
    if strategy == "left":  # the end survives: every kept row still ends with the final <|im_end|>\n
        im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        assert all(ds[i]["input_ids"][-2] == im_end for i in range(len(ds)))


def test_eval_ratio_holds_out_a_seeded_share(tmp_path, tokenizer):
    train, ev, report = build_sft_datasets(_spec(tmp_path, eval_ratio=0.1), tokenizer)
    assert (len(train), len(ev)) == (180, 20) and (report.train_samples, report.eval_samples) == (180, 20)
    again, ev2, _ = build_sft_datasets(_spec(tmp_path, eval_ratio=0.1), tokenizer)
    assert [ev[i] for i in range(20)] == [ev2[i] for i in range(20)]


def test_pt_stage_puts_loss_everywhere(tmp_path, tokenizer):
    ds, _, _ = build_sft_datasets(_spec(tmp_path), tokenizer, stage="pt")
    assert all(ds[i]["labels"] == ds[i]["input_ids"] for i in range(5))


def test_packing_reaches_a_high_real_token_share(tmp_path, tokenizer):
    ds, _, report = build_sft_datasets(_spec(tmp_path, packing=True, max_length=512), tokenizer)
    assert report.real_token_share > 0.95 and len(ds) == report.packed_rows
    assert sum(_lengths(ds)) == report.train_tokens and max(_lengths(ds)) <= 512


def test_index_folder_and_mixture_as_train_entries(tmp_path, tokenizer):
    build_index(SAMPLE, tmp_path / "idx", tokenizer, template="chatml", workers=1)
    mix = tmp_path / "mix.json"
    mix.write_text(json.dumps([{"dataset_name": "s", "abs_weight": 1, "path": str(tmp_path / "idx")}]))
    ds, _, report = build_sft_datasets(DataSpec(train=["idx", "mix.json"], base_dir=str(tmp_path),
                                                cache_dir=str(tmp_path / "cache")), tokenizer)
    assert report.samples_read == 400 and len(ds) == 400
    assert not (tmp_path / "cache" / "idx").exists()  # the index folder was used as is


def test_skip_bad_is_reported(tmp_path, tokenizer):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "好"}\n{"messages": []}\n{"text": "ok"}\n', encoding="utf-8")
    spec = DataSpec(train=["d.jsonl"], base_dir=str(tmp_path), cache_dir=str(tmp_path / "c"))
    with pytest.raises(DataError, match=r"d\.jsonl:2: the message list is empty"):
        build_sft_datasets(spec, tokenizer)
    spec.skip_bad = True
    ds, _, report = build_sft_datasets(spec, tokenizer)
    assert len(ds) == 2 and report.skipped_bad == 1 and "d.jsonl:2" in report.summary()


def test_bad_spec_values_are_data_errors():
    with pytest.raises(DataError, match="truncation_strategy must be one of delete, left, right"):
        DataSpec(train=["x"], truncation_strategy="middle")


def test_best_fit_packing_respects_capacity_and_keeps_every_sample():
    import numpy as np

    from orchestrator.train.data.pack import pack_best_fit

    lengths = np.random.default_rng(0).integers(1, 300, size=2000)
    rows = pack_best_fit(lengths, 512, seed=1)
    assert sorted(i for row in rows for i in row) == list(range(2000))
    assert max(int(lengths[row].sum()) for row in rows) <= 512
    assert lengths.sum() / (len(rows) * 512) > 0.98
