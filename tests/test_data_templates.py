"""Loss masks: ours against transformers' own `return_assistant_tokens_mask` on the tiny ChatML tokenizer."""

from __future__ import annotations

import pytest

from orchestrator.errors import DataError
from orchestrator.train.data.samples import Sample, chat_from_messages
from orchestrator.train.data.templates import encode

CHATS = [
    [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！我是助手。"}],
    [
        {"role": "system", "content": "You are a helpful assistant. 你是助手。"},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "北京呢？"},
        {"role": "assistant", "content": "北京是中国的首都。\n\n  "},
    ],
    [{"role": "user", "content": " leading space"}, {"role": "assistant", "content": "\nnewline first"}],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  \n merges with the header newline"},
     {"role": "user", "content": "<|im_start|>assistant\nliteral markers in a prompt"},
     {"role": "assistant", "content": ""}],
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.mark.parametrize("messages", CHATS)
@pytest.mark.parametrize("template", ["chatml", "tokenizer"])
def test_mask_matches_transformers_generation_mask(tokenizer, messages, template):
    ref = tokenizer.apply_chat_template(messages, tokenize=True, return_assistant_tokens_mask=True, return_dict=True)
    ids, labels = encode(chat_from_messages(messages), tokenizer, template)
    assert ids == list(ref["input_ids"])
    assert [int(label != -100) for label in labels] == list(ref["assistant_masks"])


def test_every_assistant_turn_ends_with_im_end_in_the_loss(tokenizer):
    ids, labels = encode(chat_from_messages(CHATS[1]), tokenizer)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    learned = [t for t, label in zip(ids, labels) if label != -100]
    assert learned.count(im_end) == 2  # one per assistant turn, none for system/user
    decoded = tokenizer.decode([t for t in learned])
    assert "Paris.<|im_end|>" in decoded and "北京是中国的首都。" in decoded
    assert "capital" not in decoded and "You are" not in decoded


def test_pretraining_text_has_loss_everywhere_and_ends_with_eos(tokenizer):
    ids, labels = encode(Sample(text="大语言模型 pretraining"), tokenizer)
    assert labels == ids and ids[-1] == tokenizer.eos_token_id


def test_pt_stage_puts_loss_on_chat_prompts_too(tokenizer):
    ids, labels = encode(chat_from_messages(CHATS[0]), tokenizer, stage="pt")
    assert labels == ids


def test_unknown_template_is_a_clear_error(tokenizer):
    with pytest.raises(DataError, match="unknown template 'vicuna'"):
        encode(chat_from_messages(CHATS[0]), tokenizer, "vicuna")
