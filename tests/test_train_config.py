"""Training configs: mistakes are one-line errors naming file and key, exit 2, before any model loads; the
ChatGLM3 finetune layout is read as ours."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.train.config import load_config

GOOD = """\
model: {model}
finetuning: lora
data: {{train: [train.jsonl]}}
lora: {{r: 8, alpha: 16, target_modules: [q_proj, v_proj]}}
training_args: {{output_dir: out, max_steps: 2}}
"""

BAD = {
    "unknown-top-key": ("finetunning: lora\n", "finetunning"),
    "bad-mode": ("finetuning: lora\n", "finetuning", "finetuning: lorra\n"),
    "bad-lora-r": ("lora: {r: 8", "lora.r", "lora: {r: eight"),
    "unknown-training-arg": ("max_steps: 2", "learnin_rate", "max_steps: 2, learnin_rate: 1"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_names_the_key_and_exits_2_before_loading(case, tmp_path):
    spec = BAD[case]
    (tmp_path / "model").mkdir()  # exists, but holds no weights: nothing may try to load it
    text = GOOD.format(model=tmp_path / "model")
    text = text + spec[0] if len(spec) == 2 else text.replace(spec[0], spec[2])
    config = tmp_path / "job.yaml"
    config.write_text(text)
    (tmp_path / "train.jsonl").write_text('{"input": "hi", "output": "hello"}\n')
    proc = subprocess.run([sys.executable, "-m", "orchestrator.train", str(config)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("orch train: error: ") and str(config) in proc.stderr and spec[1] in proc.stderr
    assert "Traceback" not in proc.stderr and "Loading weights" not in proc.stderr


def test_chatglm3_layout_is_translated(tmp_path):
    (tmp_path / "AdvertiseGen").mkdir()
    for name in ("train.json", "dev.json"):
        (tmp_path / "AdvertiseGen" / name).write_text('[{"conversations": []}]')
    (tmp_path / "base").mkdir()
    config = tmp_path / "lora.yaml"
    config.write_text(
        "data_config: {train_file: train.json, val_file: dev.json, test_file: dev.json, num_proc: 1}\n"
        "max_input_length: 128\nmax_output_length: 64\n"
        "training_args: {output_dir: ./output, max_steps: 3, per_device_train_batch_size: 1, learning_rate: 5.0e-5}\n"
        "peft_config: {peft_type: LORA, task_type: CAUSAL_LM, r: 8, lora_alpha: 32, lora_dropout: 0.1,"
        " target_modules: [q_proj, v_proj]}\n")
    cfg = load_config(config, model=str(tmp_path / "base"), data_dir=str(tmp_path / "AdvertiseGen"))
    assert cfg.finetuning == "lora" and cfg.lora.r == 8 and cfg.lora.alpha == 32
    assert cfg.data.train == ["train.json"] and cfg.data.eval == "dev.json"
    assert cfg.data.max_length == 192 and cfg.data_dir == str(tmp_path / "AdvertiseGen")


def test_a_launched_jobs_relative_output_dir_lands_in_the_output_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.jsonl").write_text('{"input": "hi", "output": "hello"}\n')
    config = tmp_path / "job.yaml"
    config.write_text(GOOD.format(model=tmp_path))
    monkeypatch.setenv("ORCH_OUTPUT_ROOT", str(tmp_path / "outputs"))
    monkeypatch.setenv("ORCH_RESUME", "latest")
    cfg = load_config(config)
    assert cfg.output_dir == str(tmp_path / "outputs" / "out")
    assert cfg.resume_from_checkpoint == "latest"


def test_chatglm3_style_yaml_runs_like_the_demo_passes_it(tmp_path):
    """`python -m orchestrator.train configs/lora.yaml --model BASE --data-dir data/AdvertiseGen`, as in
    ChatGLM3's finetune_hf.py, trains on its conversations files."""
    import json

    from orchestrator.demo import build_project

    build_project(tmp_path / "project", epochs=1)
    data = tmp_path / "AdvertiseGen"
    data.mkdir()
    rows = [json.loads(line) for line in (tmp_path / "project" / "data" / "train.jsonl").read_text().splitlines()]
    conversations = [{"conversations": row["messages"]} for row in rows if "messages" in row][:40]
    (data / "train.json").write_text(json.dumps(conversations, ensure_ascii=False))
    (data / "dev.json").write_text(json.dumps(conversations[:4], ensure_ascii=False))
    config = tmp_path / "lora.yaml"
    config.write_text(
        "data_config: {train_file: train.json, val_file: dev.json, test_file: dev.json, num_proc: 1}\n"
        "max_input_length: 96\nmax_output_length: 32\n"
        f"training_args: {{output_dir: {tmp_path / 'output'}, max_steps: 2, per_device_train_batch_size: 2,"
        " learning_rate: 5.0e-4, save_strategy: 'no', report_to: none, predict_with_generate: true}\n"
        "peft_config: {peft_type: LORA, task_type: CAUSAL_LM, r: 4, lora_alpha: 16, lora_dropout: 0.1,"
        " target_modules: [q_proj, v_proj]}\n")
    proc = subprocess.run([sys.executable, "-m", "orchestrator.train", str(config), "--model",
                           str(tmp_path / "project" / "base"), "--data-dir", str(data)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "output" / "adapter_model.safetensors").exists()
