"""Chat templates: exact text and trained tokens of every built-in, user-defined ones, the default, double wraps."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from orchestrator.errors import DataError
from orchestrator.train.data.encoding import encode
from orchestrator.train.data.samples import Sample, chat_from_messages
from orchestrator.train.data.templates import DEFAULT_TEMPLATE, parse_template, resolve_template
from tests.token_runs import trained_runs

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
     {"role": "user", "content": "an empty answer next"}, {"role": "assistant", "content": ""}],
]
CHAT = chat_from_messages([
    {"role": "system", "content": "你是助手。"},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "北京呢？"},
    {"role": "assistant", "content": "北京是中国的首都。"},
])
Q = "What is the capital of France?"


@pytest.mark.parametrize("messages", CHATS)
@pytest.mark.parametrize("template", ["chatml", "tokenizer"])
def test_mask_matches_transformers_generation_mask(tokenizer, messages, template):
    ref = tokenizer.apply_chat_template(messages, tokenize=True, return_assistant_tokens_mask=True, return_dict=True)
    ids, labels = encode(chat_from_messages(messages), tokenizer, template)
    assert ids == list(ref["input_ids"])
    assert [int(label != -100) for label in labels] == list(ref["assistant_masks"])


@pytest.mark.parametrize(("template", "text", "trained"), [
    ("chatml", f"<|im_start|>system\n你是助手。<|im_end|>\n<|im_start|>user\n{Q}<|im_end|>\n<|im_start|>assistant\n"
               "Paris.<|im_end|>\n<|im_start|>user\n北京呢？<|im_end|>\n<|im_start|>assistant\n北京是中国的首都。"
               "<|im_end|>\n", ["Paris.<|im_end|>", "北京是中国的首都。<|im_end|>"]),
    ("raw", f"你是助手。{Q}Paris.北京呢？北京是中国的首都。<|im_end|>", ["Paris.", "北京是中国的首都。<|im_end|>"]),
    ("fm9g", f"你是助手。<用户>{Q}<AI>Paris.<|im_end|><用户>北京呢？<AI>北京是中国的首都。<|im_end|>",
     ["Paris.<|im_end|>", "北京是中国的首都。<|im_end|>"]),
    ("chatglm3", f"[gMASK]sop<|system|>\n你是助手。<|user|>\n{Q}<|assistant|>\nParis.<|user|>\n北京呢？<|assistant|>\n"
                 "北京是中国的首都。<|im_end|>", ["\nParis.<|user|>", "\n北京是中国的首都。<|im_end|>"]),
])
def test_builtin_template_text_and_trained_tokens(tokenizer, template, text, trained):
    ids, labels = encode(CHAT, tokenizer, template)
    assert tokenizer.decode(ids) == text  # EOS of the tiny tokenizer is <|im_end|>; it has no BOS
    assert trained_runs(tokenizer, ids, labels) == trained


def test_qwen_adds_its_default_system_prompt_only_when_the_sample_has_none(tokenizer):
    plain = chat_from_messages([{"role": "user", "content": "你好"}, {"role": "assistant", "content": "您好"}])
    ids, labels = encode(plain, tokenizer, "qwen")
    assert tokenizer.decode(ids) == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                                     "你好<|im_end|>\n<|im_start|>assistant\n您好<|im_end|>\n")
    assert trained_runs(tokenizer, ids, labels) == ["您好<|im_end|>"]
    assert encode(CHAT, tokenizer, "qwen") == encode(CHAT, tokenizer, "chatml")


def test_every_assistant_turn_ends_with_im_end_in_the_loss(tokenizer):
    ids, labels = encode(chat_from_messages(CHATS[1]), tokenizer)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    learned = [t for t, label in zip(ids, labels) if label != -100]
    assert learned.count(im_end) == 2  # one per assistant turn, none for system/user
    decoded = tokenizer.decode([t for t in learned])
    assert "Paris.<|im_end|>" in decoded and "北京是中国的首都。" in decoded
    assert "capital" not in decoded and "You are" not in decoded


@pytest.mark.parametrize("template", ["auto", "chatml", "raw", "fm9g", "chatglm3"])
def test_pretraining_text_has_loss_everywhere_and_ends_with_eos(tokenizer, template):
    ids, labels = encode(Sample(text="大语言模型 pretraining"), tokenizer, template)
    assert labels == ids and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids) == "大语言模型 pretraining<|im_end|>"


def test_pt_stage_puts_loss_on_chat_prompts_too(tokenizer):
    ids, labels = encode(chat_from_messages(CHATS[0]), tokenizer, stage="pt")
    assert labels == ids


def test_unknown_template_is_a_clear_error(tokenizer):
    with pytest.raises(DataError, match="unknown template 'vicuna'"):
        encode(chat_from_messages(CHATS[0]), tokenizer, "vicuna")


USER_DEFINED = {
    "prefix": "<s>",
    "system": "### System: {content}\n",
    "user": "### Human: {content}\n",
    "assistant": "### Assistant:\n{content}{eos_token}\n\n",
}


@pytest.mark.parametrize("as_file", [False, True])
def test_user_defined_role_template(tokenizer, tmp_path, as_file):
    value = USER_DEFINED
    if as_file:
        value = tmp_path / "tpl.yaml"
        value.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in USER_DEFINED.items()), encoding="utf-8")
    ids, labels = encode(CHAT, tokenizer, str(value) if as_file else value)
    assert tokenizer.decode(ids) == (f"<s>### System: 你是助手。\n### Human: {Q}\n### Assistant:\nParis.<|im_end|>\n\n"
                                     "### Human: 北京呢？\n### Assistant:\n北京是中国的首都。<|im_end|>\n\n")
    assert trained_runs(tokenizer, ids, labels) == ["Paris.<|im_end|>", "北京是中国的首都。<|im_end|>"]


def test_user_defined_template_without_a_system_format_names_the_missing_role(tokenizer):
    formats = {"user": "U: {content}\n", "assistant": "A: {content}\n"}
    assert trained_runs(tokenizer, *encode(chat_from_messages(CHATS[0]), tokenizer, formats)) == ["你好！我是助手。"]
    with pytest.raises(DataError, match="the template has no `system` format, but the sample has a system turn"):
        encode(CHAT, tokenizer, formats)


@pytest.mark.parametrize(("value", "message"), [
    ({"user": "{content}"}, "data.template.assistant: required"),
    ({"user": "{content}", "assistant": "A:"}, "data.template.assistant: must contain {content} exactly once"),
    ({"user": "{content}", "assistant": "{content}", "prefix": "{content}"}, "data.template.prefix: cannot contain"),
    ({"user": "{content}", "assistant": "{content}", "asistant": "x"}, "data.template.asistant: unknown key"),
    ({"user": "{content} {role}", "assistant": "{content}"}, "data.template.user: unknown placeholder {role}"),
    ({"user": "{content", "assistant": "{content}"}, "data.template.user: "),
    ({"user": 3, "assistant": "{content}"}, "data.template.user: expected a string"),
    ("chatml2", "data.template: unknown template 'chatml2'"),
    ("missing.jinja", "data.template: template file not found: missing.jinja"),
])
def test_bad_template_values_name_the_key(value, message):
    with pytest.raises(DataError) as err:
        parse_template(value, "data.template")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_jinja_template_file_renders_and_masks_like_a_tokenizer_template(tokenizer, tmp_path):
    tpl = tmp_path / "vicuna.jinja"
    tpl.write_text("{% for m in messages %}{% if m['role'] == 'user' %}USER: {{ m['content'] }}\n"
                   "{% elif m['role'] == 'assistant' %}ASSISTANT:\n{{ m['content'] }}{{ eos_token }}\n"
                   "{% else %}{{ m['content'] }}\n{% endif %}{% endfor %}"
                   "{% if add_generation_prompt %}ASSISTANT:\n{% endif %}", encoding="utf-8")
    ids, labels = encode(CHAT, tokenizer, str(tpl))
    assert tokenizer.decode(ids) == (f"你是助手。\nUSER: {Q}\nASSISTANT:\nParis.<|im_end|>\nUSER: 北京呢？\n"
                                     "ASSISTANT:\n北京是中国的首都。<|im_end|>\n")
    assert trained_runs(tokenizer, ids, labels) == ["Paris.<|im_end|>", "北京是中国的首都。<|im_end|>"]


def test_template_key_follows_the_content_of_a_user_defined_template(tmp_path):
    tpl = tmp_path / "t.jinja"
    tpl.write_text("{{ messages }}")
    first = parse_template(str(tpl)).key
    tpl.write_text("{{ messages[0] }}")
    assert parse_template(str(tpl)).key != first and first.startswith("jinja-")
    other = {**USER_DEFINED, "user": "### User: {content}\n"}
    assert parse_template(USER_DEFINED).key != parse_template(other).key
    assert parse_template(USER_DEFINED).key == parse_template(dict(reversed(USER_DEFINED.items()))).key
    assert parse_template("chatml").key == "chatml"


def test_auto_is_the_tokenizers_own_template_else_chatml(tokenizer, tiny_model):
    from transformers import AutoTokenizer

    assert resolve_template("auto", tokenizer).name == "tokenizer"
    bare = AutoTokenizer.from_pretrained(tiny_model)
    bare.chat_template = None
    assert resolve_template("auto", bare).name == "chatml"
    with pytest.raises(DataError, match="has no chat_template"):
        resolve_template("tokenizer", bare)


@pytest.mark.parametrize(("template", "marker"), [
    ("chatml", "<|im_start|>"), ("qwen", "<用户>"), ("tokenizer", "<|assistant|>"), ("fm9g", "<AI>"),
    ("chatglm3", "<|im_end|>"), ("auto", "[gMASK]"), (USER_DEFINED, "<|observation|>"),
])
def test_text_that_already_holds_chat_markup_is_refused(tokenizer, template, marker):
    sample = chat_from_messages([{"role": "user", "content": f"x {marker}y"}, {"role": "assistant", "content": "z"}])
    with pytest.raises(DataError) as err:
        encode(sample, tokenizer, template)
    assert f"the user turn already holds chat markup {marker!r}" in str(err.value)
    assert "use template: raw" in str(err.value) and "\n" not in str(err.value)
    assert tokenizer.decode(encode(sample, tokenizer, "raw")[0]) == f"x {marker}yz<|im_end|>"


def test_a_user_defined_templates_own_markers_are_refused_too(tokenizer):
    formats = {"user": "<|prompter|>{content}", "assistant": "<|answer|>{content}{eos_token}"}
    sample = chat_from_messages([{"role": "user", "content": "<|answer|>"}, {"role": "assistant", "content": "z"}])
    with pytest.raises(DataError, match="chat markup '<\\|answer\\|>'"):
        encode(sample, tokenizer, formats)


SAMPLE = Path(__file__).resolve().parent.parent / "orchestrator" / "sample_data" / "chat_zh_en.jsonl"


def test_index_preview_and_training_pick_the_same_default_template(tokenizer, tmp_path):
    from orchestrator.cli.data import index, preview
    from orchestrator.train.config import DataSection
    from orchestrator.train.data.dataset import build_sft_datasets
    from orchestrator.train.data.index import TokenIndex, build_index
    from orchestrator.train.data.preview import preview_samples
    from orchestrator.train.data.spec import DataSpec

    option = lambda command: next(p.default for p in command.params if p.name == "template")  # noqa: E731
    default = lambda fn: inspect.signature(fn).parameters["template"].default  # noqa: E731
    assert {DataSpec().template, DataSection(train=["x"]).template, option(index), option(preview),
            default(build_index), default(preview_samples), default(encode)} == {DEFAULT_TEMPLATE} == {"auto"}
    shown = preview_samples(SAMPLE, tokenizer, num=1)[0]
    record = build_index(SAMPLE, tmp_path / "idx", tokenizer, workers=1)
    train, _, _ = build_sft_datasets(DataSpec(train=[str(SAMPLE)], cache_dir=str(tmp_path / "cache")), tokenizer)
    assert record["template"] == shown["template"] == "tokenizer"
    assert TokenIndex(tmp_path / "idx")[0][0].tolist() == shown["input_ids"] == train[0]["input_ids"]
    assert shown["labels"] == train[0]["labels"]


def test_training_config_takes_role_formats_and_names_the_bad_key(tmp_path, tiny_model):
    from orchestrator.errors import ConfigError
    from orchestrator.train.config import load_config

    job = tmp_path / "job.yaml"
    head = f"model: {tiny_model}\ndata:\n  train: [{SAMPLE}]\n"
    job.write_text(head + '  template: {user: "U: {content}\\n", assistant: "A: {content}{eos_token}"}\n')
    assert load_config(job, on_controller=True).data.template == {"user": "U: {content}\n",
                                                                   "assistant": "A: {content}{eos_token}"}
    job.write_text(head + "  template: {user: 'U: {content}', assistant: 'A:'}\n")
    with pytest.raises(ConfigError) as err:
        load_config(job, on_controller=True)
    assert str(err.value) == f"{job}: data.template.assistant: must contain {{content}} exactly once (found 0)"
    job.write_text(head)
    assert load_config(job, on_controller=True).data.template == "auto"


def test_a_template_file_named_in_the_training_config_travels_with_the_job(tmp_path):
    from orchestrator.jobs.inputs import config_paths

    job = tmp_path / "job.yaml"
    job.write_text("model: m\ndata: {train: [a.jsonl], template: tpl/chat.jinja}\n")
    assert ("data.template", "tpl/chat.jinja") in config_paths(job)
