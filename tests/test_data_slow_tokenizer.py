"""Tokenizers without a fast backend (ChatGLM3's custom-code SentencePiece kind): piece-by-piece encoding.

Uses the ChatGLM3-shaped tokenizer of `tests/remote_model` (pure Python, role tokens, `[gMASK]sop`) and a variant
that, like ChatGLM3's own tokenizer with `encode_special_tokens` off, never splits role tokens out of text.
"""

from __future__ import annotations

import json

import pytest

from orchestrator.train.data.encoding import IGNORE_INDEX, encode
from orchestrator.train.data.index import TokenIndex, build_index
from orchestrator.train.data.samples import chat_from_messages
from orchestrator.train.data.templates import resolve_template
from tests.remote_model import build_tokenizer
from tests.remote_model.tokenization_tinyglm import TinyGLMTokenizer
from tests.token_runs import trained_runs

TOOL_CHAT = [
    {"role": "system", "content": "你是助手。"},
    {"role": "user", "content": "北京天气？"},
    {"role": "assistant", "metadata": "get_weather", "content": 'tool_call(city="北京")'},
    {"role": "tool", "content": '{"temp": 20}'},
    {"role": "assistant", "content": "北京今天20度。"},
]


class UnsplitGLMTokenizer(TinyGLMTokenizer):
    """Role tokens are in the vocabulary but not added tokens: `encode("<|user|>")` spells it out, as ChatGLM3's."""

    def add_tokens(self, *args, **kwargs) -> int:
        return 0


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
    return tok


@pytest.fixture(scope="module")
def unsplit(folder):
    tok = UnsplitGLMTokenizer(str(folder / "tinyglm_vocab.json"))
    assert len(tok.encode("<|user|>", add_special_tokens=False)) > 1
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


@pytest.mark.parametrize("which", ["glm", "unsplit"])
def test_chatglm3_on_a_slow_tokenizer_matches_chatglm3s_own_finetune_encoding(request, which):
    tok = request.getfixturevalue(which)
    ids, labels = encode(chat_from_messages(TOOL_CHAT), tok, "chatglm3")
    assert (ids, labels) == reference_chatglm3(tok, TOOL_CHAT)
    assert tok.decode(ids) == ('[gMASK]sop<|system|>\n你是助手。<|user|>\n北京天气？<|assistant|>get_weather\n'
                               'tool_call(city="北京")<|observation|>\n{"temp": 20}<|assistant|>\n北京今天20度。</s>')
    assert trained_runs(tok, ids, labels) == ['get_weather\ntool_call(city="北京")<|observation|>',
                                             "\n北京今天20度。</s>"]
    role_ids = tok.convert_tokens_to_ids(["<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"])
    assert [ids.count(t) for t in role_ids] == [1, 1, 2, 1]


def test_auto_picks_chatglm3_from_the_vocabulary_when_there_is_no_chat_template(unsplit, glm):
    assert resolve_template("auto", unsplit).name == "chatglm3"
    assert resolve_template("auto", glm).name == "tokenizer"  # its own chat_template comes first
    chat = chat_from_messages(TOOL_CHAT[:2] + [{"role": "assistant", "content": "晴。"}])
    ids, labels = encode(chat, glm)
    assert glm.decode(ids) == "[gMASK]sop<|system|>\n你是助手。<|user|>\n北京天气？<|assistant|>\n晴。"
    assert trained_runs(glm, ids, labels) == ["晴。"]  # that chat_template has no end-of-turn token to train


def test_chatml_on_a_slow_tokenizer_encodes_piece_by_piece(glm):
    chat = chat_from_messages(TOOL_CHAT[:2] + [{"role": "assistant", "content": "晴。"}])
    ids, labels = encode(chat, glm, "chatml")
    assert glm.decode(ids) == ("<|im_start|>system\n你是助手。<|im_end|>\n<|im_start|>user\n北京天气？<|im_end|>\n"
                               "<|im_start|>assistant\n晴。<|im_end|>\n")
    assert trained_runs(glm, ids, labels) == ["晴。<|im_end|>"]


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
