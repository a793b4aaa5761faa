"""Mixtures: realised shares follow abs_weight, repeats vs exhaustion, seeded transforms, bad configs."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.errors import DataError
from orchestrator.train.data.mixture import iter_mixture, load_mixture, materialize_mixture, plan_mixture
from tests.orch_cli import orch


def _dataset(path, n, tag):
    path.write_text("".join(json.dumps({"input": f"{tag} 问题 {i}", "output": f"{tag} 答 {i}"}, ensure_ascii=False)
                            + "\n" for i in range(n)), encoding="utf-8")


@pytest.fixture
def config(tmp_path):
    _dataset(tmp_path / "a.jsonl", 50, "a")
    _dataset(tmp_path / "b.jsonl", 20, "b")
    _dataset(tmp_path / "c.jsonl", 5, "c")
    (tmp_path / "upper.py").write_text(
        "def transform(data, num_sample, r):\n"
        "    return {'input': data['input'].upper(), 'output': f\"{data['output']} #{num_sample} {r.randint(0, 9)}\"}\n")
    entries = [
        {"dataset_name": "a", "task_name": "qa", "abs_weight": 5, "path": "a.jsonl", "allow_repeat": True},
        {"dataset_name": "b", "task_name": "qa", "abs_weight": 3, "path": "b.jsonl", "allow_repeat": True,
         "transforms": "upper.py"},
        {"dataset_name": "c", "task_name": "chat", "abs_weight": 2, "path": "c.jsonl", "allow_repeat": True},
    ]
    path = tmp_path / "mix.json"
    path.write_text(json.dumps(entries))
    return path


def test_realised_shares_follow_abs_weight(config):
    entries = load_mixture(config)
    drawn = list(iter_mixture(entries, plan_mixture(entries, num_samples=10_000), seed=1))
    assert len(drawn) == 10_000
    counts = Counter(name for name, _ in drawn)
    assert counts == {"a": 5000, "b": 3000, "c": 2000}
    first = Counter(name for name, _ in drawn[:2000])  # interleaved, not in blocks
    for name, weight in (("a", 0.5), ("b", 0.3), ("c", 0.2)):
        assert abs(first[name] / 2000 - weight) < 0.04


def test_small_dataset_repeats_in_whole_epochs_or_is_exhausted(config):
    entries = load_mixture(config)
    drawn = [rec for name, rec in iter_mixture(entries, plan_mixture(entries, 1000), seed=0) if name == "c"]
    assert Counter(r["input"] for r in drawn) == {f"c 问题 {i}": 40 for i in range(5)}
    entries[2].allow_repeat = False
    plans = plan_mixture(entries, 1000)
    assert plans[2].samples == 5 and plans[2].exhausted and plans[2].epochs == 1.0
    assert abs(plans[0].share - 500 / 805) < 1e-9


def test_transforms_get_num_sample_and_a_seeded_rng(config):
    entries = load_mixture(config)
    run = lambda seed: [r for n, r in iter_mixture(entries, plan_mixture(entries, 200), seed) if n == "b"]  # noqa: E731
    first, again, other = run(7), run(7), run(8)
    assert first == again and first != other
    assert first[0]["input"].startswith("B 问题") and first[0]["output"].split("#")[1].startswith("0 ")
    assert first[59]["output"].split("#")[1].startswith("59 ")


def test_transform_that_raises_names_the_transform_and_the_sample(config, tmp_path):
    (tmp_path / "upper.py").write_text("def transform(data, num_sample, r):\n    return data['missing']\n")
    entries = load_mixture(config)
    expected = r"upper\.py:2: dataset b: transform raised KeyError\('missing'\) on sample .*b\.jsonl:\d+"
    with pytest.raises(DataError, match=expected):
        list(iter_mixture(entries, plan_mixture(entries, 100), seed=0))
    assert not list(tmp_path.glob("cache/*.jsonl"))
    with pytest.raises(DataError):
        materialize_mixture(config, tmp_path / "cache", seed=0)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.suffix == ".jsonl" or ".tmp-" in p.name]


@pytest.mark.parametrize(("entry", "problem"), [
    ({"dataset_name": "x", "path": "a.jsonl"}, "missing 'abs_weight'"),
    ({"dataset_name": "x", "path": "a.jsonl", "abs_weight": -1}, "abs_weight must be a positive number"),
    ({"dataset_name": "x", "path": "nope.jsonl", "abs_weight": 1}, "no such data file"),
    ({"dataset_name": "x", "path": "a.jsonl", "abs_weight": 1, "transforms": "nope.py"}, "no such transforms file"),
])
def test_bad_mixture_config_is_a_one_line_error_with_file_and_line(config, tmp_path, entry, problem):
    bad = tmp_path / "bad.json"
    bad.write_text('[\n{"dataset_name": "a", "path": "a.jsonl", "abs_weight": 1},\n' + json.dumps(entry) + "\n]")
    result = CliRunner().invoke(cli, ["data", "mix", str(bad)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert "bad.json:3: " in result.output and problem in result.output


def test_mix_table_piped_keeps_every_dataset_and_task_name_whole(config):
    entries = json.loads(config.read_text())
    for entry in entries:
        entry["dataset_name"] = f"medical_dialogue_{entry['dataset_name']}_zh_en_cleaned_2024q3_dedup"
        entry["task_name"] = f"{entry['task_name']}_multi_turn_with_system_prompt"
    config.write_text(json.dumps(entries))
    result = orch("data", "mix", str(config))  # stdout is a pipe, as in `orch data mix mix.json | less`
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "…" not in result.stdout
    for entry in entries:
        assert any(entry["dataset_name"] in line and entry["task_name"] in line for line in lines), entry


def test_mix_command_prints_shares_epochs_and_tokens(config):
    result = CliRunner().invoke(cli, ["data", "mix", str(config), "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["dataset_name"]: r for r in map(json.loads, result.output.splitlines())}
    assert rows["a"]["samples"] == 38 and rows["a"]["share"] == pytest.approx(0.5, abs=0.01)
    assert rows["c"]["epochs"] == pytest.approx(15 / 5)
    table = CliRunner().invoke(cli, ["data", "mix", str(config)])
    assert table.exit_code == 0 and "total: 75 samples" in table.output and "50.7%" in table.output
