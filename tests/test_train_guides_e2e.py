"""The guides' command lines: ChatGLM3's `finetune_hf.py DATA_DIR MODEL CONFIG yes` order on `orch train`, and
one real run of an ms-swift-style config launched twice from two copies of the data (as two jobs' snapshots):
the second launch does not tokenize again, and each run writes its own versioned output folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from orchestrator.cli.train_args import TrainArgs, parse_train_args
from orchestrator.errors import ConfigError


@pytest.fixture
def glm_project(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "lora.yaml").write_text("x: 1\n")
    (tmp_path / "ds_zero_2.json").write_text("{}")
    return tmp_path


def test_chatglm3_order_and_ours_are_both_read(glm_project, monkeypatch):
    monkeypatch.chdir(glm_project)
    assert parse_train_args(("data/", "THUDM/chatglm3-6b", "lora.yaml", "yes")) == TrainArgs(
        "lora.yaml", "data/", "THUDM/chatglm3-6b", None, "yes")
    assert parse_train_args(("data", "m", "lora.yaml", "ds_zero_2.json", "12")) == TrainArgs(
        "lora.yaml", "data", "m", "ds_zero_2.json", "12")
    assert parse_train_args(("lora.yaml", "no")) == TrainArgs("lora.yaml", resume="no")
    assert parse_train_args(("lora.yaml",)) == TrainArgs("lora.yaml")
    with pytest.raises(ConfigError, match="data is a folder: give DATA_DIR MODEL CONFIG"):
        parse_train_args(("data", "lora.yaml"))
    with pytest.raises(ConfigError, match="unexpected 'maybe'"):
        parse_train_args(("lora.yaml", "maybe"))


def test_the_guides_command_line_reaches_the_config_check(glm_project):
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "train", "data/", str(glm_project / "nomodel"),
                           "lora.yaml", "yes"], capture_output=True, text=True, timeout=120, cwd=glm_project)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is a directory" not in proc.stderr and "unexpected extra argument" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "lora.yaml" in proc.stderr


SWIFT_CONFIG = """\
sft_type: lora
custom_train_dataset_path: [train.csv]
train_dataset_sample: 30
max_length: -1
system: 你是一个乐于助人的助手。
lora_target_modules: DEFAULT
lora_rank: 4
lora_dtype: fp32
self_cognition_sample: 8
model_name: [小黄, Xiao Huang]
model_author: [魔搭, ModelScope]
add_output_dir_suffix: true
output_dir: {out}
training_args: {{max_steps: 1, per_device_train_batch_size: 2, save_strategy: 'no', report_to: none}}
"""


def _token_cache(folder):
    """Size of each cache entry (index folders, materialised files), leaving out the memo of content hashes (one
    short line per data path seen)."""
    return {p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
            for p in folder.iterdir() if not p.name.startswith(".")}


def test_second_launch_of_the_same_config_does_not_tokenize_again(tmp_path, tiny_model):
    rows = "".join(f"问题{i},,回答{i}\n" for i in range(40))
    (tmp_path / "config.yaml").write_text(SWIFT_CONFIG.format(out=tmp_path / "output"))
    env = {**os.environ, "ORCH_HOME": str(tmp_path / "home"), "PYTHONPATH": os.getcwd()}
    env.pop("ORCH_DATA_CACHE", None)
    logs = []
    for job in ("job1", "job2"):  # two snapshots of the same data, as two launched jobs have
        data = tmp_path / job / "data"
        data.mkdir(parents=True)
        (data / "train.csv").write_text("instruction,input,output\n" + rows, encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "orchestrator", "train", str(data), str(tiny_model),
                               str(tmp_path / "config.yaml"), "no"], capture_output=True, text=True, timeout=300,
                              env={**env, "ORCH_JOB_ID": job})
        assert proc.returncode == 0, proc.stderr[-3000:]
        logs.append(proc.stdout + proc.stderr)
        if job == "job1":
            first = _token_cache(tmp_path / "home" / "data-cache")
    assert "tokenizing" in logs[0] and "tokenizing" not in logs[1]
    assert _token_cache(tmp_path / "home" / "data-cache") == first
    assert "38 samples read" not in logs[0] and "48 samples read" in logs[0]  # 40 rows + 8 identity samples
    # ms-swift's order: train_dataset_sample draws 30 of the user's 40 rows, then the 8 identity rows join them
    assert "train: 38 samples" in logs[0], logs[0][-3000:]
    versions = sorted(p.name for p in (tmp_path / "output").iterdir() if not p.name.startswith("."))
    assert [v.split("-")[0] for v in versions] == ["v0", "v1"]
    adapter = json.loads((tmp_path / "output" / versions[0] / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]  # peft's default for llama
    shutil.rmtree(tmp_path / "output")


def test_launch_takes_model_and_data_dir_like_train(tmp_path, orch_home):
    from tests.orch_cli import orch

    (tmp_path / "AdvertiseGen").mkdir()
    (tmp_path / "AdvertiseGen" / "train.json").write_text('[{"input": "hi", "output": "hello"}]')
    (tmp_path / "job.yaml").write_text("model: /models/elsewhere\ndata: {train: [train.json]}\n")
    dry = orch("launch", "--dry-run", "--model", "/models/chatglm3-6b", "--data-dir", "AdvertiseGen", "job.yaml",
               cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "--model /models/chatglm3-6b --data-dir AdvertiseGen" in dry.stdout
    assert "(job.yaml: model): /models/chatglm3-6b" in dry.stdout and "/models/elsewhere" not in dry.stdout
    missing = orch("launch", "--dry-run", "--data-dir", "nowhere", "job.yaml", cwd=tmp_path)
    assert missing.returncode == 2 and "data.train[0]: file not found: nowhere/train.json" in missing.stderr
