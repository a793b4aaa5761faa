"""Files as they come from a Windows workstation: byte-order marks, UTF-16, GBK/GB18030/Big5 with CRLF, Excel CSV;
YAML with a key written twice; errors that point at the offending line (issue 20)."""

from __future__ import annotations

import codecs
import json
import os
import stat
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError, DataError, InventoryError, PlanError
from orchestrator.train.data.convert import convert_file
from orchestrator.train.data.entries import DataEntry, parse_entry
from tests.orch_cli import assert_refused, orch

SAMPLES = Path(__file__).resolve().parent.parent / "orchestrator" / "sample_data" / "chat_zh_en.jsonl"
CSV = 'instruction,input,output\r\n翻譯,你好,"Hello,\nworld"\r\n繁體中文,,"答：是"\r\n'  # Excel: CRLF rows
TEXT = {".jsonl": '{"input": "問題", "output": "答案"}\n\n{"text": "預訓練"}\n',  # in GBK and Big5 alike
        ".json": '[\n  {"input": "問題", "output": "答案"},\n  {"text": "預訓練"}\n]\n',
        ".csv": CSV, ".txt": "第一行\n\n第二行\n"}


def _write(path: Path, text: str, encoding: str, crlf: bool = False) -> Path:
    """`text` saved in `encoding` (utf-8-sig / utf-16 / utf-32 write their BOM), optionally with CRLF."""
    path.write_bytes((text.replace("\n", "\r\n") if crlf else text).encode(encoding))
    return path


def _converted(src: Path, tmp_path: Path, encoding: str | None = None) -> bytes:
    out = tmp_path / f"{src.name}.{encoding}.out.jsonl"
    convert_file(src, out, entry=DataEntry(str(src), encoding=encoding))
    return out.read_bytes()


@pytest.mark.parametrize("suffix", sorted(TEXT))
@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be-bom", "utf-32"])
def test_a_file_with_a_byte_order_mark_reads_as_its_utf8_twin(tmp_path, suffix, encoding):
    twin = _write(tmp_path / f"twin{suffix}", TEXT[suffix], "utf-8")
    if encoding == "utf-16-be-bom":
        src = tmp_path / f"data{suffix}"
        src.write_bytes(codecs.BOM_UTF16_BE + TEXT[suffix].encode("utf-16-be"))
    else:
        src = _write(tmp_path / f"data{suffix}", TEXT[suffix], encoding)
    assert _converted(src, tmp_path) == _converted(twin, tmp_path)


@pytest.mark.parametrize("encoding", ["gbk", "gb18030", "big5", "utf-16-le"])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".txt"])
def test_a_named_encoding_reads_windows_files_as_their_utf8_twin(tmp_path, encoding, suffix):
    text = TEXT[suffix]
    twin = _write(tmp_path / f"twin{suffix}", text, "utf-8", crlf=suffix != ".csv")
    src = _write(tmp_path / f"data{suffix}", text, encoding, crlf=suffix != ".csv")
    assert _converted(src, tmp_path, encoding) == _converted(twin, tmp_path)
    assert b"\r" not in _converted(src, tmp_path, encoding).replace(b"\\r", b"")  # CRLF line ends are not data


def test_a_gbk_chat_jsonl_converts_with_encoding_to_the_records_of_its_utf8_twin(tmp_path):
    """The done-when of issue 20, through the command line: the same records; without --encoding one line naming
    the encoding to try, exit 2, nothing written."""
    _write(tmp_path / "chat_gbk.jsonl", SAMPLES.read_text(encoding="utf-8"), "gbk", crlf=True)
    utf8 = orch("data", "convert", str(SAMPLES), "-o", "utf8.jsonl", cwd=tmp_path)
    gbk = orch("data", "convert", "chat_gbk.jsonl", "--encoding", "gb18030", "-o", "gbk.jsonl", cwd=tmp_path)
    assert utf8.returncode == 0 and gbk.returncode == 0, gbk.stderr
    assert (tmp_path / "gbk.jsonl").read_bytes() == (tmp_path / "utf8.jsonl").read_bytes()
    assert gbk.stdout.strip() == "gbk.jsonl: 200 samples"
    refused = orch("data", "convert", "chat_gbk.jsonl", "-o", "plain.jsonl", cwd=tmp_path)
    assert_refused(refused, "chat_gbk.jsonl:1:", "not UTF-8", "byte offset 45", "encoding: gb18030")
    assert not (tmp_path / "plain.jsonl").exists()
    unknown = orch("data", "convert", "chat_gbk.jsonl", "--encoding", "klingon", "-o", "x.jsonl", cwd=tmp_path)
    assert_refused(unknown, "--encoding", "unknown text encoding 'klingon'")


def test_the_refusal_names_line_byte_offset_and_the_encoding_the_bytes_decode_as(tmp_path):
    head = '{"text": "ascii"}\r\n{"text": "ok"}\r\n'
    cases = {"gb.jsonl": (head + '{"text": "中文数据"}\n').encode("gb18030"),
             "big5.jsonl": (head + '{"text": "繁體中文資料，這是問題"}\n').encode("big5"),
             "wide.jsonl": (head + '{"text": "中文"}\n').encode("utf-16-le"),
             "binary.jsonl": head.encode() + b'{"text": "\xff\xfe\xfd\x80"}\n'}
    expected = {"gb.jsonl": ("gb.jsonl:3:", "encoding: gb18030"), "big5.jsonl": ("big5.jsonl:3:", "encoding: big5"),
                "wide.jsonl": ("wide.jsonl:1:", "encoding: utf-16-le"),
                "binary.jsonl": ("binary.jsonl:3:", "encoding: NAME in the data entry")}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError) as err:
            _converted(tmp_path / name, tmp_path)
        message = str(err.value)
        assert all(part in message for part in expected[name]) and "\n" not in message, message
        if name != "wide.jsonl":
            assert f"byte offset {len(head.encode()) + 10}" in message, message
    with pytest.raises(DataError, match=r"big5\.jsonl:3: not valid gbk text \(byte offset \d+\)"):
        _converted(tmp_path / "big5.jsonl", tmp_path, "gbk")  # a wrong named encoding: no guessing


def test_index_preview_and_mixture_read_the_encoding_and_write_utf8(tmp_path, tokenizer):
    from orchestrator.train.data.index import TokenIndex, build_index
    from orchestrator.train.data.mixture import iter_mixture, load_mixture, plan_mixture
    from orchestrator.train.data.preview import preview_samples

    text = "".join(SAMPLES.read_text(encoding="utf-8").splitlines(keepends=True)[:20])
    twin = _write(tmp_path / "twin.jsonl", text, "utf-8")
    gbk = _write(tmp_path / "gbk.jsonl", text, "gb18030", crlf=True)
    wide = _write(tmp_path / "wide.jsonl", text, "utf-16")
    build_index(twin, tmp_path / "i-twin", tokenizer, workers=1)
    build_index(gbk, tmp_path / "i-gbk", tokenizer, workers=1, encoding="gb18030")
    build_index(wide, tmp_path / "i-wide", tokenizer, workers=1)
    for name in ("i-gbk", "i-wide"):
        assert (tmp_path / name / "tokens.bin").read_bytes() == (tmp_path / "i-twin" / "tokens.bin").read_bytes()
        assert [json.loads(line) for line in (tmp_path / name / "data.jsonl").read_text("utf-8").splitlines()] == \
               [json.loads(line) for line in text.splitlines()]
    assert len(TokenIndex(tmp_path / "i-gbk")) == 20
    with pytest.raises(DataError, match="gbk.jsonl:1: not UTF-8.*encoding: gb18030"):
        build_index(gbk, tmp_path / "i-refused", tokenizer, workers=1)
    assert not (tmp_path / "i-refused").exists()
    from click.testing import CliRunner

    from orchestrator.cli import cli

    tok = str(tokenizer.name_or_path)  # the command lines, in process (transformers is loaded already)
    ran = CliRunner().invoke(cli, ["data", "index", str(gbk), "--tokenizer", tok, "-o", str(tmp_path / "i-cli"),
                                   "--encoding", "gb18030", "--workers", "1", "--json"])
    assert ran.exit_code == 0 and json.loads(ran.stdout)["samples"] == 20, ran.output
    ran = CliRunner().invoke(cli, ["data", "preview", str(gbk), "--tokenizer", tok, "--encoding", "gb18030",
                                   "-n", "1", "--json"])
    assert ran.exit_code == 0 and json.loads(ran.stdout.splitlines()[0])["line"] == 1, ran.output
    assert preview_samples(gbk, tokenizer, num=3, encoding="gb18030") == [
        {**row, "source": str(gbk)} for row in preview_samples(twin, tokenizer, num=3)]
    mix = tmp_path / "mix.json"
    _write(mix, json.dumps([{"dataset_name": "gbk", "path": "gbk.jsonl", "abs_weight": 1, "encoding": "gb18030"},
                            {"dataset_name": "wide", "path": "wide.jsonl", "abs_weight": 1}]), "utf-8-sig")
    entries = load_mixture(mix)
    mixed = [record for _, record in iter_mixture(entries, plan_mixture(entries), seed=1)]
    assert sorted(map(json.dumps, mixed)) == sorted(map(json.dumps, [json.loads(x) for x in text.splitlines()] * 2))
    assert orch("data", "mix", "mix.json", "--json", cwd=tmp_path).returncode == 0
    _write(mix, json.dumps([{"dataset_name": "gbk", "path": "gbk.jsonl", "abs_weight": 1}]), "utf-8")
    refused = orch("data", "mix", "mix.json", cwd=tmp_path)
    assert_refused(refused, "gbk.jsonl:1:", "encoding: gb18030")
    assert orch("data", "mix", "mix.json", "--encoding", "gb18030", "--json", cwd=tmp_path).returncode == 0


def test_a_config_data_entry_names_its_encoding_and_its_files_travel(tmp_path):
    """`orch launch` sends what a config names: an `{path, encoding}` entry's file, and the datasets of a mixture
    config saved with a BOM (a Windows editor's)."""
    from orchestrator.jobs.inputs import job_inputs

    assert parse_entry({"path": "a.csv", "encoding": "GB18030"}, "data.train[0]").encoding == "gb18030"
    assert not parse_entry({"path": "a.csv", "encoding": "gbk"}, "x").plain
    with pytest.raises(DataError, match=r"data\.train\[0\]\.encoding: unknown text encoding 'utf-9'"):
        parse_entry({"path": "a.csv", "encoding": "utf-9"}, "data.train[0]")
    (tmp_path / "data").mkdir()
    _write(tmp_path / "data" / "a.csv", CSV, "gbk")
    _write(tmp_path / "data" / "b.jsonl", TEXT[".jsonl"], "gbk")
    _write(tmp_path / "data" / "mix.json", json.dumps([{"dataset_name": "b", "path": "b.jsonl", "abs_weight": 1,
                                                        "encoding": "gbk"}]), "utf-8-sig")
    (tmp_path / "job.yaml").write_text("model: m\ndata:\n  train: [{path: data/a.csv, encoding: gb18030}, "
                                       "data/mix.json]\n")
    inputs = job_inputs(["-m", "orchestrator.train", "job.yaml"], [], tmp_path)
    assert set(inputs.inside) == {"data/a.csv", "data/mix.json", "data/b.jsonl"}


GBK_TRAIN = """\
model: {model}
stage: sft
finetuning: lora
data:
  train: [{{path: chat_gbk.jsonl, encoding: gb18030}}]
  template: chatml
  max_length: 128
lora: {{r: 4, alpha: 8, target_modules: all-linear}}
training_args: {{output_dir: out, max_steps: 2, per_device_train_batch_size: 2, save_strategy: 'no', report_to: none}}
"""


def test_a_gbk_data_entry_trains(tmp_path, tiny_model):
    """One small run: the worker reads `encoding:` from the config and trains on every sample of the GBK file."""
    _write(tmp_path / "chat_gbk.jsonl", SAMPLES.read_text(encoding="utf-8"), "gbk", crlf=True)
    (tmp_path / "gbk.yaml").write_text(GBK_TRAIN.format(model=tiny_model))
    umask = os.umask(0o022)  # a common umask: files readable by others unless orch says otherwise
    try:
        proc = orch("train", "gbk.yaml", cwd=tmp_path, env={"ORCH_HOME": str(tmp_path / "home")}, timeout=600)
    finally:
        os.umask(umask)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "data: 200 samples read from 1 source(s), 0 bad line(s) skipped" in proc.stdout, proc.stdout
    cached = [p for p in (tmp_path / "home" / "data-cache").glob("chat_gbk-*.jsonl")]
    assert len(cached) == 1 and cached[0].read_bytes() == _converted(SAMPLES, tmp_path)  # decoded once, as UTF-8
    # the cache under $ORCH_HOME is private like the rest of it
    loose = [f"{oct(stat.S_IMODE(p.stat().st_mode))} {p.name}" for p in (tmp_path / "home" / "data-cache").rglob("*")
             if stat.S_IMODE(p.stat().st_mode) & 0o077]
    assert stat.S_IMODE(cached[0].parent.stat().st_mode) == 0o700 and loose == [], loose


CONFIG = """\
model: m
data:
  train: [a.jsonl]
training_args:
  learning_rate: 1.0e-4
lora: {r: 4}
training_args:
  num_train_epochs: 3
"""


def test_a_yaml_key_written_twice_is_refused_in_one_line_with_both_lines(tmp_path):
    from orchestrator.train.config import load_config
    from orchestrator.train.data.templates import parse_template
    from orchestrator.jobs.inputs import config_paths

    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "dup.yaml").write_text(CONFIG)
    assert_refused(orch("train", "dup.yaml", cwd=tmp_path), "dup.yaml:7:", "key 'training_args' is given twice",
                   "lines 4 and 7")
    glm = tmp_path / "glm.yaml"
    glm.write_text("data_config:\n  train_file: a.jsonl\n  num_proc: 1\n  train_file: b.jsonl\nmax_input_length: 8\n")
    with pytest.raises(ConfigError, match=r"glm\.yaml:4: key 'train_file' is given twice \(lines 2 and 4\)"):
        load_config(glm)
    with pytest.raises(PlanError, match=r"dup\.yaml:7: key 'training_args'"):
        config_paths(tmp_path / "dup.yaml")
    roles = tmp_path / "roles.yaml"
    roles.write_text('user: "<u>{content}"\nassistant: "<a>{content}"\nuser: "<x>{content}"\n')
    with pytest.raises(DataError, match=r"roles\.yaml:3: key 'user' is given twice \(lines 1 and 3\)"):
        parse_template(str(roles), "template")
    merged = tmp_path / "merge.yaml"  # a merge key's values may be overridden: that is not a duplicate
    merged.write_text("base: &b {learning_rate: 1.0e-4, seed: 1}\nmodel: m\ndata: {train: [a.jsonl]}\n"
                      "training_args:\n  <<: *b\n  seed: 2\n")
    from orchestrator.yamlio import load_yaml

    assert load_yaml(merged, ConfigError)["training_args"] == {"learning_rate": 1.0e-4, "seed": 2}


def test_a_mixture_entry_with_a_key_twice_is_refused(tmp_path):
    from orchestrator.train.data.mixture import load_mixture

    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "mix.json").write_text('[\n {"dataset_name": "a", "path": "a.jsonl", "abs_weight": 1},\n'
                                       ' {"dataset_name": "b", "path": "a.jsonl",\n'
                                       '  "abs_weight": 1, "abs_weight": 9}\n]')
    with pytest.raises(DataError, match=r"mix\.json:3: duplicate key 'abs_weight'"):
        load_mixture(tmp_path / "mix.json")


def test_errors_point_at_the_offending_line(tmp_path):
    """CSV rows at the line they start on (a quoted cell may span lines), CRLF JSONL, JSON lists, .txt."""
    cases = {
        "quote.csv": ('input,output\n"q,a\n', "quote.csv:2: unterminated quoted field"),
        "span.csv": ('input,output\n"multi\nline",a\nb,c,d\n', "span.csv:4: 3 cell(s), the header has 2"),
        "crlf.jsonl": ('{"text": "a"}\r\n{"text": "b"}\r\n{"text": \r\n', "crlf.jsonl:3: malformed JSON"),
        "list.json": ('[\n  {"text": "a"},\n\n  {"text": 1,}\n]', "list.json:4: malformed JSON"),
        "deep.jsonl": ('{"text": "a"}\n' + "[" * 100000 + "\n", "deep.jsonl:2: JSON nested too deeply"),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(DataError) as err:
            _converted(tmp_path / name, tmp_path)
        assert str(err.value).startswith(f"{tmp_path / name}:{expected.split(':', 1)[1]}"), str(err.value)
    (tmp_path / "latin.txt").write_bytes("one\ntwo\ncafé\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.txt:3: not UTF-8 text \(byte offset 11\)"):
        _converted(tmp_path / "latin.txt", tmp_path)
    assert_refused(orch("data", "convert", "quote.csv", "-o", "q.jsonl", cwd=tmp_path), "quote.csv:2:")


def test_inventory_with_a_bom_reads_and_one_in_gbk_is_one_line(tmp_path):
    from orchestrator.cluster.inventory import load_inventory

    text = '[cluster]\nworkdir = "/tmp/w"\n\n[[nodes]]\nname = "node1"  # 节点\nhost = "localhost"\n'
    assert load_inventory(str(_write(tmp_path / "bom.toml", text, "utf-8-sig"))).nodes[0].name == "node1"
    with pytest.raises(InventoryError, match=r"gbk\.toml:5: not UTF-8 text \(byte offset \d+\); save it as UTF-8 "
                                             r"\(it decodes as gb18030\)"):
        load_inventory(str(_write(tmp_path / "gbk.toml", text, "gbk")))


def test_side_files_saved_on_windows_read_like_their_linux_twins(tmp_path):
    """A DeepSpeed JSON and a chat template saved by a Windows editor (BOM, CRLF) act as the Linux copies do."""
    from orchestrator.train.data.templates import parse_template
    from orchestrator.train.deepspeed import load_deepspeed_config

    ds = {"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto"}
    assert load_deepspeed_config(str(_write(tmp_path / "ds.json", json.dumps(ds, indent=1), "utf-8-sig",
                                            crlf=True))) == ds
    jinja = "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}"
    assert parse_template(str(_write(tmp_path / "t.jinja", jinja, "utf-8-sig", crlf=True)), "template").source == jinja
    with pytest.raises(ConfigError, match=r"deepspeed: the config must be a JSON object"):
        load_deepspeed_config(str(_write(tmp_path / "list.json", "[1]", "utf-8")))


def test_a_windows_path_in_a_config_names_the_path_that_exists(tmp_path, monkeypatch):
    from orchestrator.train.config import load_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "win.yaml").write_text("model: m\ndata:\n  train: ['data\\train.jsonl']\n")
    with pytest.raises(ConfigError, match=r"data\.train\[0\]: file not found: data\\train\.jsonl \(paths take /, "
                                          r"not \\: data/train\.jsonl\)"):
        load_config("win.yaml", on_controller=True)
