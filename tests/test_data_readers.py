"""Readers and converters: every format of DESIGN.md section 4, from small files written here (Chinese included)."""

from __future__ import annotations

import json

import pytest

from orchestrator.errors import DataError
from orchestrator.train.data.convert import convert_file, convert_to_split
from orchestrator.train.data.entries import read_preference
from orchestrator.train.data.readers import iter_samples, read_samples
from orchestrator.train.data.samples import Sample


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def _read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_every_supervised_format_normalises_to_one_sample_type(tmp_path):
    path = _jsonl(tmp_path / "mixed.jsonl", [
        {"text": "纯文本预训练"},
        {"input": "", "output": "only output"},
        {"input": "问题", "output": "答案"},
        {"instruction": "翻译", "input": "hello", "output": "你好"},
        {"query": "q2", "response": "a2", "history": [["q1", "a1"]], "system": "系统"},
        {"conversations": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                      {"role": "assistant", "content": "a"}]},
        {"conversations": [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "您好"}]},
    ])
    samples, bad = read_samples(path)
    assert bad.count == 0
    assert samples[0] == Sample(text="纯文本预训练")
    assert samples[1] == Sample(text="only output")
    assert samples[2].turns == [("user", "问题"), ("assistant", "答案")]
    assert samples[3].turns == [("user", "翻译\nhello"), ("assistant", "你好")]
    assert samples[4].system == "系统"
    assert samples[4].turns == [("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2")]
    assert samples[5].turns == [("user", "hi"), ("assistant", "hey")]
    assert samples[6].system == "s" and samples[6].messages()[0] == {"role": "system", "content": "s"}
    assert samples[7].turns == [("user", "你好"), ("assistant", "您好")]


def test_json_list_file_reports_the_line_each_element_starts_on(tmp_path):
    path = tmp_path / "train.json"
    path.write_text('[\n  {"input": "问", "output": "答"},\n  {"input": "q", "output": "a"},\n  {"input": 3}\n]\n',
                    encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.json:4: missing or non-string field 'input'"):
        list(iter_samples(path))


def test_txt_is_one_pretraining_sample_per_non_empty_line(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("第一行\n\n  \nsecond line\n", encoding="utf-8")
    assert [s.text for _, s in iter_samples(path)] == ["第一行", "second line"]


@pytest.mark.parametrize(("record", "problem"), [
    ({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"},
                   {"role": "assistant", "content": "b"}]}, "system turn is only allowed once, as the first"),
    ({"messages": [{"role": "assistant", "content": "a"}]}, "wrong role order: expected user, got assistant"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, "wrong role order"),
    ({"messages": [{"role": "user", "content": "a"}]}, "must end with an assistant turn"),
    ({"messages": [{"role": "wizard", "content": "a"}]}, "unknown or missing role 'wizard'"),
    ({"instruction": "x"}, "missing or non-string field 'output'"),
    ({"prompt": "p", "chosen": "c", "rejected": "r"}, "preference sample"),
    ({"foo": 1}, "unrecognised sample format"),
])
def test_bad_samples_name_file_line_and_problem(tmp_path, record, problem):
    path = _jsonl(tmp_path / "bad.jsonl", [{"text": "ok"}, record])
    with pytest.raises(DataError) as err:
        read_samples(path)
    assert str(err.value).startswith(f"{path}:2: ") and problem in str(err.value)


def test_malformed_json_and_skip_bad(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "好"}\n{"text": \n{"text": "ok"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d\.jsonl:2: malformed JSON"):
        read_samples(path)
    samples, bad = read_samples(path, skip_bad=True)
    assert [s.text for s in samples] == ["好", "ok"] and bad.count == 1 and "d.jsonl:2" in bad.examples[0]


def test_empty_file_is_an_error(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="e.jsonl: the file is empty"):
        read_samples(tmp_path / "e.jsonl")


def test_preference_strings_stay_strings_and_message_lists_are_kept(tmp_path):
    _jsonl(tmp_path / "pref.jsonl", [
        {"prompt": "哪个好？", "chosen": "这个", "rejected": "那个"},
        {"prompt": [{"role": "user", "content": "hi"}], "chosen": "hello", "rejected": [
            {"role": "assistant", "content": "go away"}]},
    ])
    pairs = read_preference(["pref.jsonl"], base_dir=tmp_path)
    assert pairs[0] == {"prompt": "哪个好？", "chosen": "这个", "rejected": "那个"}
    assert pairs[1]["chosen"] == [{"role": "assistant", "content": "hello"}]
    assert pairs[1]["prompt"] == [{"role": "user", "content": "hi"}]
    _jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "chosen": "c"}])
    with pytest.raises(DataError, match=r"bad\.jsonl:1: missing field\(s\) rejected"):
        read_preference("bad.jsonl", base_dir=tmp_path)


def test_convert_txt_and_json_list_to_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("你好世界\n\nhello\n", encoding="utf-8")
    n, _ = convert_file(tmp_path / "a.txt", tmp_path / "out" / "a.jsonl")
    assert n == 2 and _read(tmp_path / "out" / "a.jsonl") == [
        {"input": "", "output": "你好世界"}, {"input": "", "output": "hello"}]
    (tmp_path / "b.json").write_text(json.dumps([{"input": "问", "output": "答"}] * 3, ensure_ascii=False))
    assert convert_file(tmp_path / "b.json", tmp_path / "b.jsonl")[0] == 3
    assert "问" in (tmp_path / "b.jsonl").read_text(encoding="utf-8")


def test_convert_chat_export_folder_with_seeded_split(tmp_path):
    src = tmp_path / "exports"
    src.mkdir()
    chat = lambda i: {"conversations": [{"role": "user", "content": f"问题{i}"},  # noqa: E731
                                        {"role": "assistant", "content": f"回答{i}"}]}
    (src / "a_train.json").write_text(json.dumps([chat(i) for i in range(10)], ensure_ascii=False))
    (src / "b_train.json").write_text(json.dumps([chat(i) for i in range(10, 20)], ensure_ascii=False))
    (src / "dev.json").write_text(json.dumps([chat(99)], ensure_ascii=False))
    counts, _ = convert_to_split(src, tmp_path / "o1", split_ratio=0.25, seed=3)
    assert counts == {"train.jsonl": 15, "dev.jsonl": 6}
    convert_to_split(src, tmp_path / "o2", split_ratio=0.25, seed=3)
    assert (tmp_path / "o1" / "dev.jsonl").read_text() == (tmp_path / "o2" / "dev.jsonl").read_text()
    train = {json.dumps(r) for r in _read(tmp_path / "o1" / "train.jsonl")}
    dev = {json.dumps(r) for r in _read(tmp_path / "o1" / "dev.jsonl")}
    assert not train & dev and len(train | dev) == 21
    with pytest.raises(DataError, match="output folder must differ"):
        convert_to_split(src, src)
