"""Packing: a sample's logits are the same alone and inside a packed row (attention never crosses samples)."""

from __future__ import annotations

import json

import pytest
import torch

from orchestrator.train.data.collate import make_collator
from orchestrator.train.data.dataset import build_sft_datasets
from orchestrator.train.data.spec import DataSpec

SAMPLES = [
    {"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！我是一个乐于助人的助手。"}]},
    {"input": "What is the capital of France?", "output": "The capital of France is Paris."},
    {"text": "大语言模型在多个节点上训练，每个节点有八张显卡。"},
    {"instruction": "Say hello", "output": "Hello! How can I help you today?"},
]


@pytest.fixture(scope="module")
def tok_model(tokenizer, tiny_model):
    return tokenizer, tiny_model


def _load(path, attn):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn, dtype=torch.float32).eval()


def _datasets(tmp_path, tokenizer, packing, max_length=128):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in SAMPLES), encoding="utf-8")
    spec = DataSpec(train=[str(data)], packing=packing, max_length=max_length, cache_dir=str(tmp_path / "c"))
    return build_sft_datasets(spec, tokenizer)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_logits_alone_equal_logits_inside_packed_row(tmp_path, tok_model, attn):
    tokenizer, path = tok_model
    model = _load(path, attn)
    plain, _, _ = _datasets(tmp_path, tokenizer, packing=False)
    packed, _, report = _datasets(tmp_path, tokenizer, packing=True, max_length=80)
    assert report.packed_rows >= 2 and len(packed) == report.packed_rows
    batch = make_collator(tokenizer, packing=True, pad_to_multiple_of=16)([packed[i] for i in range(len(packed))])
    assert "attention_mask" not in batch
    with torch.no_grad():
        packed_logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        alone = {tuple(plain[i]["input_ids"]): model(input_ids=torch.tensor([plain[i]["input_ids"]])).logits[0]
                 for i in range(len(plain))}
    found = 0
    for row in range(len(packed)):
        ids, pos = packed[row]["input_ids"], packed[row]["position_ids"]
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(ids)]
        for a, b in zip(starts, starts[1:]):
            ref = alone[tuple(ids[a:b])]
            torch.testing.assert_close(packed_logits[row, a:b], ref, atol=1e-5, rtol=1e-4)
            found += 1
    assert found == len(SAMPLES)


def test_without_restarting_positions_the_samples_would_contaminate(tmp_path, tok_model):
    """The equivalence above is not vacuous: one continuous sequence changes the second sample's logits."""
    tokenizer, path = tok_model
    model = _load(path, "sdpa")
    packed, _, _ = _datasets(tmp_path, tokenizer, packing=True, max_length=200)
    item = packed[0]
    second = [i for i, p in enumerate(item["position_ids"]) if p == 0][1]
    with torch.no_grad():
        good = model(input_ids=torch.tensor([item["input_ids"]]), position_ids=torch.tensor([item["position_ids"]]),
                     use_cache=False).logits
        bad = model(input_ids=torch.tensor([item["input_ids"]])).logits
    assert not torch.allclose(good[0, second:], bad[0, second:], atol=1e-3)


def test_plain_batches_pad_with_masked_labels(tmp_path, tok_model):
    tokenizer, _ = tok_model
    plain, _, _ = _datasets(tmp_path, tokenizer, packing=False)
    items = [plain[i] for i in range(len(plain))]
    batch = make_collator(tokenizer, packing=False, pad_to_multiple_of=8)(items)
    longest = max(len(it["input_ids"]) for it in items)
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["input_ids"].shape[1] >= longest
    assert batch["attention_mask"].sum().item() == sum(len(it["input_ids"]) for it in items)
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
