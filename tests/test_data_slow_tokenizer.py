"""Tokenizers without a fast backend (ChatGLM3's custom-code SentencePiece kind): piece-by-piece encoding.

Uses the ChatGLM3-like tokenizer of `tests/remote_model` (SentencePiece trained here, `[gMASK]sop`, role tokens
after the vocabulary that text never splits into, no chat template, left padding only), whose encodings and
decodings match ChatGLM3's own tokenizer code on the same tokenizer.model.
"""

from __future__ import annotations

import json

import pytest

from orchestrator.train.data.collate import make_collator
from orchestrator.train.data.encoding import IGNORE_INDEX, encode, plain_ids
from orchestrator.train.data.index import TokenIndex, build_index
from orchestrator.train.data.samples import chat_from_messages
from orchestrator.train.data.templates import resolve_template
from tests.remote_model import build_tokenizer
from tests.token_runs import trained_runs

TOOL_CHAT = [
    {"role": "system", "content": "你是助手。"},
    {"role": "user", "content": "北京天气？"},
    {"role": "assistant", "metadata": "get_weather", "content": 'tool_call(city="北京")'},
    {"role": "tool", "content": '{"temp": 20}'},
    {"role": "assistant", "content": "北京今天20度。"},
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("tinyglm-tokenizer")
    build_tokenizer(out)
    return out


@pytest.fixture(scope="module")
def glm(folder):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)  # the code in the folder, as ChatGLM3's
    assert getattr(tok, "backend_tokenizer", None) is None  # the slow path is what is tested here
    assert not getattr(tok, "chat_template", None)  # ChatGLM3's tokenizer_config.json has none
    return tok


def reference_chatglm3(tok, messages: list[dict]) -> tuple[list[int], list[int]]:
    """ChatGLM3 finetune_hf.py `process_batch` (build_single_message per turn, EOS, loss masks shifted by one);
    observation turns carry no loss (as in the GLM-4 finetune script; ChatGLM3's raised on tool turns)."""
    ids, masks = tok.get_prefix_tokens(), [False, False]
    for m in messages:
        role = "observation" if m["role"] == "tool" else m["role"]
        new = tok.build_single_message(role, m.get("metadata", ""), m["content"])
        ids += new
        masks += [role not in ("system", "user", "observation")] * len(new)
    ids.append(tok.eos_token_id)
    masks = [False, *masks]
    return ids, [t if m else IGNORE_INDEX for t, m in zip(ids, masks)]


def test_chatglm3_on_a_slow_tokenizer_matches_chatglm3s_own_finetune_encoding(glm):
    ids, labels = encode(chat_from_messages(TOOL_CHAT), glm, "chatglm3")
    assert (ids, labels) == reference_chatglm3(glm, TOOL_CHAT)
    assert glm.decode(ids) == ('[gMASK]sop<|system|> \n 你是助手。<|user|> \n 北京天气？<|assistant|> get_weather\n '
                               'tool_call(city="北京")<|observation|> \n {"temp": 20}<|assistant|> \n 北京今天20度。')
    assert trained_runs(glm, ids, labels) == ['get_weather\n tool_call(city="北京")<|observation|>',
                                             "\n 北京今天20度。"]
    role_ids = glm.convert_tokens_to_ids(["<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"])
    assert [ids.count(t) for t in role_ids] == [1, 1, 2, 1] and ids[-1] == glm.eos_token_id
    assert len(plain_ids(glm, "<|user|>")) > 1  # text never becomes a role token


def test_auto_picks_chatglm3_from_the_vocabulary_when_there_is_no_chat_template(glm):
    assert resolve_template("auto", glm).name == "chatglm3"
    chat = chat_from_messages(TOOL_CHAT[:2] + [{"role": "assistant", "content": "晴。"}])
    assert encode(chat, glm) == encode(chat, glm, "chatglm3")


def test_chatml_on_a_slow_tokenizer_encodes_piece_by_piece(glm):
    chat = chat_from_messages(TOOL_CHAT[:2] + [{"role": "assistant", "content": "晴。"}])
    ids, labels = encode(chat, glm, "chatml")
    assert trained_runs(glm, ids, labels) == ["晴。 <|im_end|>"]  # no such token in this vocabulary: spelt out
    assert ids[:len(plain_ids(glm, "<|im_start|>"))] == plain_ids(glm, "<|im_start|>")


def test_the_tokenizer_pads_only_on_the_left_and_orch_never_asks_it_to_pad(glm, folder):
    """What ChatGLM3's tokenizer does (its `_pad` asserts the left side; transformers >= 4.45 hands `_pad` a
    padding_side it does not take), and that orch's loading and encoding live with it."""
    from orchestrator.train.compat import version
    from orchestrator.train.model import load_tokenizer

    tok = load_tokenizer(str(folder), trust_remote_code=True)
    assert tok.padding_side == "left"
    chat = chat_from_messages(TOOL_CHAT)
    assert encode(chat, tok, "chatglm3") == reference_chatglm3(tok, TOOL_CHAT)
    # orch's collator pads rows of different lengths itself (on the right, labels masked) with this tokenizer
    short, long = plain_ids(tok, "北京"), plain_ids(tok, "北京天气怎么样")
    batch = make_collator(tok, False)([{"input_ids": short, "labels": short}, {"input_ids": long, "labels": long}])
    assert batch["input_ids"][0].tolist() == short + [tok.pad_token_id] * (len(long) - len(short))
    assert batch["labels"][0].tolist()[len(short):] == [IGNORE_INDEX] * (len(long) - len(short))
    if version("transformers") >= (4, 45):
        with pytest.raises(TypeError, match="padding_side"):
            tok("北京", padding=True)
    else:
        assert tok(["北京", "北京天气"], padding=True)["input_ids"][0][0] == tok.pad_token_id  # pads on the left
        tok.padding_side = "right"
        with pytest.raises(AssertionError):
            tok("北京")


def test_index_of_a_slow_tokenizer_holds_what_encode_gives(glm, tmp_path):
    src = tmp_path / "tools.jsonl"
    src.write_text(json.dumps({"conversations": TOOL_CHAT}, ensure_ascii=False) + "\n", encoding="utf-8")
    record = build_index(src, tmp_path / "idx", glm, template="chatglm3", workers=1)
    assert record["template"] == "chatglm3" and record["samples"] == 1
    ids, mask = TokenIndex(tmp_path / "idx")[0]
    want_ids, want_labels = encode(chat_from_messages(TOOL_CHAT), glm, "chatglm3")
    assert ids.tolist() == want_ids and [int(label != IGNORE_INDEX) for label in want_labels] == mask.tolist()
    assert build_index(src, tmp_path / "idx", glm, template="chatglm3", workers=1)["cached"] is True
    assert build_index(src, tmp_path / "idx", glm, template="chatml", workers=1)["cached"] is False
