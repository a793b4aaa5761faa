"""The three guides' data shapes as their users have them: a CSV, ms-swift's jsonl rows (pretraining, preference),
FM9G's medical JSON through a field mapping and a language filter, ChatGLM3 chat exports in per-contact
subfolders."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.errors import DataError
from orchestrator.train.data.entries import DataEntry, parse_entry, read_preference
from orchestrator.train.data.readers import read_samples


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _convert(*args):
    return CliRunner().invoke(cli, ["data", "convert", *map(str, args)])


def test_csv_header_names_the_fields_in_any_of_our_formats(tmp_path):
    alpaca = tmp_path / "alpaca.csv"
    alpaca.write_text('instruction,input,output\n翻译成英文,你好,Hello\n"Say ""hi""",,"hi,\nthere"\n',
                      encoding="utf-8")
    samples, _ = read_samples(alpaca)
    assert samples[0].turns == [("user", "翻译成英文\n你好"), ("assistant", "Hello")]
    assert samples[1].turns == [("user", 'Say "hi"'), ("assistant", "hi,\nthere")]
    swift = tmp_path / "qr.csv"
    swift.write_text("query,response\n1+1=?,2\n", encoding="utf-8")
    assert read_samples(swift)[0][0].turns == [("user", "1+1=?"), ("assistant", "2")]
    bad = tmp_path / "bad.csv"
    bad.write_text("query,response\nq,a\nq2\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.csv:3: 1 cell\(s\), the header has 2 \(query, response\)"):
        read_samples(bad)
    result = _convert(alpaca, "-o", tmp_path / "alpaca.jsonl")
    assert result.exit_code == 0, result.output
    assert _lines(tmp_path / "alpaca.jsonl")[0] == {"instruction": "翻译成英文", "input": "你好", "output": "Hello"}


def test_swift_pretraining_rows_train_on_the_whole_response(tmp_path):
    path = _jsonl(tmp_path / "pt.jsonl", [{"response": "床前明月光"}, {"response": "the moon"}])
    samples, _ = read_samples(path)
    assert [(s.text, s.turns) for s in samples] == [("床前明月光", []), ("the moon", [])]


SWIFT_PAIRS = [
    {"query": "你好", "response": "你好！有什么可以帮你？", "rejected_response": "走开"},
    {"system": "你是医生", "history": [["头疼", "多久了？"]], "query": "三天", "response": "建议就医",
     "rejected_response": "没事"},
]


def test_swift_preference_rows_become_dpo_pairs_with_history_and_system_in_the_prompt(tmp_path):
    _jsonl(tmp_path / "dpo.jsonl", SWIFT_PAIRS)
    pairs = read_preference(["dpo.jsonl"], base_dir=tmp_path)
    assert pairs[0] == {"prompt": "你好", "chosen": "你好！有什么可以帮你？", "rejected": "走开"}
    assert pairs[1]["prompt"] == [{"role": "system", "content": "你是医生"}, {"role": "user", "content": "头疼"},
                                  {"role": "assistant", "content": "多久了？"}, {"role": "user", "content": "三天"}]
    assert pairs[1]["rejected"] == [{"role": "assistant", "content": "没事"}]


def test_preference_rows_given_to_sft_are_refused_in_one_line_not_dropped(tmp_path):
    path = _jsonl(tmp_path / "dpo.jsonl", SWIFT_PAIRS)
    with pytest.raises(DataError, match=r"dpo\.jsonl:1: a preference sample .* stage: dpo"):
        read_samples(path)


def test_convert_writes_preference_pairs_for_dpo_as_the_readme_says(tmp_path):
    _jsonl(tmp_path / "dpo.jsonl", SWIFT_PAIRS)
    result = _convert(tmp_path / "dpo.jsonl", "-o", tmp_path / "out.jsonl")
    assert result.exit_code == 0 and "2 samples" in result.output, result.output
    rows = _lines(tmp_path / "out.jsonl")
    assert rows[0] == {"prompt": "你好", "chosen": "你好！有什么可以帮你？", "rejected": "走开"}
    assert read_preference(["out.jsonl"], base_dir=tmp_path) == read_preference(["dpo.jsonl"], base_dir=tmp_path)


MEDICAL = [
    {"Question": "感冒了怎么办？", "Complex_CoT": "先判断症状……", "Response": "多喝水，注意休息。"},
    {"Question": "What helps a cold?", "Complex_CoT": "Think.", "Response": "Rest and fluids."},
    {"Question": "发烧38度要吃药吗？", "Complex_CoT": "体温……", "Response": "可以物理降温，必要时服药。"},
]


def test_fm9g_medical_json_via_a_field_mapping_and_a_chinese_filter(tmp_path):
    src = tmp_path / "medical_o1_sft_mix.json"
    src.write_text(json.dumps(MEDICAL, ensure_ascii=False, indent=2), encoding="utf-8")
    plain = _convert(src, "-o", tmp_path / "x.jsonl")
    assert plain.exit_code == 2 and "unrecognised sample format (keys: Complex_CoT, Question, Response)" in plain.output
    result = _convert(src, "-o", tmp_path / "split", "--map", "input=Question,output=Response",
                      "--keep-language", "zh", "--split-ratio", "0.5")
    assert result.exit_code == 0, result.output
    assert "left out 1 record(s) not in language zh" in result.output
    rows = _lines(tmp_path / "split" / "train.jsonl") + _lines(tmp_path / "split" / "dev.jsonl")
    assert sorted(r["input"] for r in rows) == sorted([MEDICAL[0]["Question"], MEDICAL[2]["Question"]])
    assert {r["output"] for r in rows} == {MEDICAL[0]["Response"], MEDICAL[2]["Response"]}
    typo = _convert(src, "-o", tmp_path / "y.jsonl", "--map", "input=Questoin,output=Response")
    assert typo.exit_code == 2 and "medical_o1_sft_mix.json:2: no field 'Questoin' to map" in typo.output


def test_config_data_entry_takes_the_same_mapping(tmp_path):
    entry = parse_entry({"path": "m.json", "columns": {"input": "Question", "output": "Response"},
                         "keep_language": "zh"}, "data.train[0]")
    assert entry == DataEntry("m.json", (("input", "Question"), ("output", "Response")), "zh")
    with pytest.raises(DataError, match=r"data.train\[0\].keep_language: expected one of zh, en \(got 'fr'\)"):
        parse_entry({"path": "m.json", "keep_language": "fr"}, "data.train[0]")
    with pytest.raises(DataError, match=r"data.train\[0\].colums: unknown key"):
        parse_entry({"path": "m.json", "colums": "input=Q"}, "data.train[0]")


def test_chatglm3_exports_in_per_contact_subfolders_are_walked(tmp_path):
    chat = lambda q: {"conversations": [{"role": "user", "content": q},  # noqa: E731
                                        {"role": "assistant", "content": "好的"}]}
    for contact in ("张三", "李四"):
        folder = tmp_path / "exports" / contact
        folder.mkdir(parents=True)
        (folder / "train.json").write_text(json.dumps([chat(f"{contact}{i}") for i in range(3)], ensure_ascii=False))
        (folder / "dev.json").write_text(json.dumps([chat(f"{contact}dev")], ensure_ascii=False))
    result = _convert(tmp_path / "exports", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "train.jsonl: 6 samples" in result.output and "dev.jsonl: 2 samples" in result.output


def test_language_flag_of_index_accepts_only_zh_and_en(tmp_path):
    src = _jsonl(tmp_path / "a.jsonl", [{"text": "x"}])
    result = CliRunner().invoke(cli, ["data", "index", str(src), "--tokenizer", str(tmp_path), "-o",
                                      str(tmp_path / "idx"), "--language", "fr"])
    assert result.exit_code == 2 and "'fr' is not one of 'zh', 'en'" in result.output


def _mixture(tmp_path, transform: str, nlines: int):
    _jsonl(tmp_path / "med.jsonl", [{"Question": f"问{i}", "Response": f"答{i}"} for i in range(6)])
    (tmp_path / "add_template.py").write_text(transform)
    config = tmp_path / "mix.json"
    config.write_text(json.dumps([{"dataset_name": "medical", "task_name": "qa", "abs_weight": 1, "path": "med.jsonl",
                                   "transforms": "add_template.py", "allow_repeat": True, "nlines": nlines}]))
    return config


GOOD_TRANSFORM = "def transform(data, num_sample, r):\n    return {'input': data['Question'], 'output': data['Response']}\n"


def test_mix_warns_once_when_nlines_differs_from_the_data(tmp_path):
    result = CliRunner().invoke(cli, ["data", "mix", str(_mixture(tmp_path, GOOD_TRANSFORM, 1000)), "--json"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {tmp_path / 'mix.json'}:1: dataset medical: nlines 1000 in the config, 6 in "
                        f"{tmp_path / 'med.jsonl'}; using 6"]
    quiet = CliRunner().invoke(cli, ["data", "mix", str(_mixture(tmp_path, GOOD_TRANSFORM, 6))])
    assert quiet.exit_code == 0 and "warning" not in quiet.output


@pytest.mark.parametrize(("transform", "needle"), [
    ("def transform(data, num_sample, r):\n    return {'input': data['question']}\n",
     "add_template.py:2: dataset medical: transform raised KeyError('question') on sample"),
    ("def transform(data, num_sample, r):\n    return {'prompt': data['Question']}\n",
     "dataset medical: the transform's output for sample"),
])
def test_mix_runs_each_transform_on_a_few_samples_and_names_dataset_and_sample(tmp_path, transform, needle):
    result = CliRunner().invoke(cli, ["data", "mix", str(_mixture(tmp_path, transform, 6))])
    assert result.exit_code == 2 and needle in result.output and "med.jsonl:1" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_an_up_to_date_index_is_reported_without_loading_the_tokenizer(tmp_path, tiny_model):
    import subprocess
    import sys

    src = _jsonl(tmp_path / "d.jsonl", [{"input": f"问{i}", "output": f"答{i}"} for i in range(60)])
    args = ["data", "index", str(src), "--tokenizer", str(tiny_model), "-o", str(tmp_path / "idx"), "--workers", "1"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0 and "built: 60 samples" in first.output, first.output
    code = ("import sys; from click.testing import CliRunner; from orchestrator.cli import cli; "
            f"r = CliRunner().invoke(cli, {args!r}); print(r.output.strip()); print('transformers' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.splitlines()[-2].endswith("up to date (cached): 60 samples, " + first.output.split(
        "60 samples, ")[1].split(",")[0] + ", template tokenizer")
    assert proc.stdout.splitlines()[-1] == "False"
    (tmp_path / "idx" / "orch_index.json").write_text(
        (tmp_path / "idx" / "orch_index.json").read_text().replace('"request": "', '"request": "x'))
    again = CliRunner().invoke(cli, args)  # not known from the request: the tokenizer loads, the index is still valid
    assert again.exit_code == 0 and "up to date (cached)" in again.output
