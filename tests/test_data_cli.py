"""`orch data convert|index|preview` end to end, and bad input: exit 2, one line naming file:line, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli

SAMPLE = "orchestrator/sample_data/chat_zh_en.jsonl"


def _run(*args):
    return CliRunner().invoke(cli, ["data", *map(str, args)])


def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert len(text.splitlines()) == 1 and text.startswith("orch: error: ")
    assert "Traceback" not in text
    for needle in needles:
        assert needle in text


def test_preview_json_has_ids_and_masked_labels(tiny_model):
    result = _run("preview", SAMPLE, "--tokenizer", tiny_model, "-n", "3", "--json", "--max-length", "40")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert len(rows) == 3 and all(len(r["input_ids"]) == len(r["labels"]) <= 40 for r in rows)
    assert all(-100 in r["labels"] for r in rows) and rows[0]["line"] == 1
    table = _run("preview", SAMPLE, "--tokenizer", tiny_model, "-n", "1")
    assert table.exit_code == 0 and "<|im_end|>" in table.output and "-100" in table.output


def test_index_then_cached_rerun(tmp_path, tiny_model):
    out = tmp_path / "idx"
    first = _run("index", SAMPLE, "--tokenizer", tiny_model, "--language", "zh", "--output", out, "--workers", "1")
    assert first.exit_code == 0 and "built: 200 samples" in first.output
    again = _run("index", SAMPLE, "--tokenizer", tiny_model, "--language", "zh", "--output", out, "--json")
    assert json.loads(again.output)["cached"] is True
    assert sorted(json.loads((out / "meta.json").read_text())) == sorted(
        ["language", "nlines", "nbytes", "length_distribute", "avg_token_per_line", "data_sample"])


def test_convert_txt_and_folder(tmp_path):
    (tmp_path / "a.txt").write_text("一行\n\nline two\n", encoding="utf-8")
    result = _run("convert", tmp_path / "a.txt", "-o", tmp_path / "a.jsonl")
    assert result.exit_code == 0 and "2 samples" in result.output
    split = _run("convert", SAMPLE, "-o", tmp_path / "split", "--split-ratio", "0.1")
    assert split.exit_code == 0 and "train.jsonl: 180 samples" in split.output and "dev.jsonl: 20" in split.output


@pytest.mark.parametrize(("content", "needle"), [
    ('{"text": "好"}\n{"text": "a",}\n', "bad.jsonl:2: malformed JSON"),
    ('{"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q"}]}\n',
     "bad.jsonl:1: message 1: wrong role order"),
    ('{"text": "ok"}\n{"messages": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"}]}\n',
     "bad.jsonl:2: message 1: a system turn is only allowed once, as the first message"),
    ('{"instruction": "q"}\n', "bad.jsonl:1: missing or non-string field 'output'"),
    ("\n", "bad.jsonl: the file is empty"),
])
def test_bad_input_fails_cleanly_and_writes_nothing(tmp_path, tiny_model, content, needle):
    bad = tmp_path / "in" / "bad.jsonl"
    bad.parent.mkdir()
    bad.write_text(content, encoding="utf-8")
    out = tmp_path / "idx"
    _one_line_error(_run("index", bad, "--tokenizer", tiny_model, "--output", out, "--workers", "1"), needle)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    _one_line_error(_run("convert", bad, "-o", tmp_path / "out.jsonl"), needle)
    assert not (tmp_path / "out.jsonl").exists()


def test_skip_bad_reports_the_count(tmp_path, tiny_model):
    bad = tmp_path / "in" / "bad.jsonl"
    bad.parent.mkdir()
    bad.write_text('{"text": "好"}\n{oops\n{"text": "ok"}\n', encoding="utf-8")
    result = _run("index", bad, "--tokenizer", tiny_model, "--output", tmp_path / "idx", "--skip-bad")
    assert result.exit_code == 0 and "2 samples" in result.output
    assert "skipped 1 bad line(s)" in result.output and "bad.jsonl:2: malformed JSON" in result.output


def test_same_folder_and_missing_tokenizer_are_clear_errors(tmp_path, tiny_model):
    src = tmp_path / "d.jsonl"
    src.write_text('{"text": "x"}\n')
    _one_line_error(_run("index", src, "--tokenizer", tiny_model, "--output", tmp_path),
                    "output folder must differ from the input folder")
    _one_line_error(_run("preview", src, "--tokenizer", tmp_path / "nope"), "nope: tokenizer folder not found")


def test_real_process_prints_no_traceback(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[\n{"dataset_name": "a", "path": "missing.jsonl", "abs_weight": 1}\n]')
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "data", "mix", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == f"orch: error: {bad}:2: a: no such data file {tmp_path / 'missing.jsonl'}"
