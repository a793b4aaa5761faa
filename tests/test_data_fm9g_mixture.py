"""The FM9G guide's mixture: a transform that writes the ChatML markup itself. Any wrapping template refuses it in
one line naming the dataset and sample; `template: raw` trains on it with the markup exactly once."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.errors import DataError
from orchestrator.train.data.dataset import build_sft_datasets
from orchestrator.train.data.spec import DataSpec
from tests.token_runs import trained_runs

# What the guide's add_template.py does: the whole prompt in ChatML in `input`, the answer alone in `output`.
ADD_TEMPLATE = '''\
SYSTEM = "You are a helpful assistant."


def transform(data, num_sample, r):
    prompt = (f"<|im_start|>system\\n{SYSTEM}<|im_end|>\\n"
              f"<|im_start|>User\\n{data['input']}<|im_end|>\\n"
              "<|im_start|>assistant\\n")
    return {"input": prompt, "output": data["output"]}
'''
ANSWERS = {f"答案{tag}{i}" for tag in "ab" for i in range(4)}


@pytest.fixture
def mixture(tmp_path):
    (tmp_path / "add_template.py").write_text(ADD_TEMPLATE, encoding="utf-8")
    for tag in "ab":
        rows = [{"input": f"问题{tag}{i}", "output": f"答案{tag}{i}"} for i in range(4)]
        (tmp_path / f"{tag}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                              encoding="utf-8")
    entries = [{"dataset_name": f"fm9g_{tag}", "task_name": "qa", "abs_weight": 1, "path": f"{tag}.jsonl",
                "transforms": "add_template.py", "allow_repeat": False} for tag in "ab"]
    (tmp_path / "mix.json").write_text(json.dumps(entries), encoding="utf-8")
    return tmp_path


def _spec(folder, template) -> DataSpec:
    return DataSpec(train=["mix.json"], base_dir=str(folder), cache_dir=str(folder / "cache"), template=template)


@pytest.mark.parametrize("template", ["auto", "chatml", "qwen"])
def test_wrapping_a_templated_mixture_again_is_refused_naming_dataset_and_sample(tokenizer, mixture, template):
    with pytest.raises(DataError) as err:
        build_sft_datasets(_spec(mixture, template), tokenizer)
    message = str(err.value)
    assert message.startswith(f"{mixture / 'mix.json'}: dataset fm9g_") and ": transformed sample 1: " in message
    assert "the user turn already holds chat markup '<|im_start|>'" in message and "use template: raw" in message


def test_raw_trains_on_the_transforms_markup_exactly_once(tokenizer, mixture):
    train, _, report = build_sft_datasets(_spec(mixture, "raw"), tokenizer)
    assert report.train_samples == 8
    seen = set()
    for item in train:
        text = tokenizer.decode(item["input_ids"])
        assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>User\n问题")
        assert text.count("<|im_start|>") == 3 and text.count("<|im_start|>assistant\n") == 1
        [answer] = trained_runs(tokenizer, item["input_ids"], item["labels"])
        assert answer.endswith("<|im_end|>") and text.endswith("<|im_start|>assistant\n" + answer)
        seen.add(answer.removesuffix("<|im_end|>"))
    assert seen == ANSWERS


def _preview(mixture, tiny_model, *args):
    args = ["data", "preview", str(mixture / "mix.json"), "--tokenizer", str(tiny_model), *args]
    return CliRunner().invoke(cli, args)


def test_preview_refuses_by_default_and_shows_raw_when_asked(tiny_model, mixture):
    refused = _preview(mixture, tiny_model)
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
    assert "dataset fm9g_" in refused.output and "transformed sample 1" in refused.output
    assert "use template: raw" in refused.output and "Traceback" not in refused.output
    shown = _preview(mixture, tiny_model, "--template", "raw", "--json")
    rows = [json.loads(line) for line in shown.output.splitlines()]
    assert len(rows) == 3 and {r["template"] for r in rows} == {"raw"}
    table = _preview(mixture, tiny_model, "--template", "raw", "-n", "1")
    assert table.exit_code == 0 and "(template raw)" in table.output
