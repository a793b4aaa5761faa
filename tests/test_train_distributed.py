"""Two processes on one node through `orch train` (real torchrun, gloo): DeepSpeed ZeRO-2 and ZeRO-3 train and
checkpoint; and one DPO run on preference pairs through trl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.orch_cli import demo_project

CONFIG = """\
model: base
stage: {stage}
finetuning: {mode}
data: {{train: [{data}], template: chatml, max_length: 128, packing: {packing}}}
lora: {{r: 8, alpha: 16, dropout: 0.0, target_modules: all-linear}}
{extra}
training_args: {{output_dir: {out}, max_steps: 12, per_device_train_batch_size: 2, learning_rate: {lr},
                 logging_steps: 4, save_steps: 12, report_to: none, seed: 3}}
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = demo_project(tmp_path_factory.mktemp("distributed") / "llm")
    pairs = [{"prompt": f"Question {i}: what is {i} plus {i}?", "chosen": f"It is {2 * i}.",
              "rejected": "我不知道。"} for i in range(12)]
    pairs += [{"system": "You add numbers.", "history": [["hi", "hello"]], "query": f"What is {i} plus {i}?",
               "response": f"It is {2 * i}.", "rejected_response": "我不知道。"} for i in range(12, 24)]  # ms-swift's
    (folder / "data" / "prefs.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
    return folder


def train(workspace: Path, name: str, nproc: int, env: dict | None = None,
          **fields) -> tuple[subprocess.CompletedProcess, list[dict]]:
    values = {"stage": "sft", "mode": "full", "data": "data/train.jsonl", "packing": "true", "extra": "",
              "lr": 3e-3, "out": f"out/{name}", **fields}
    config = workspace / f"{name}.yaml"
    config.write_text(CONFIG.format(**values))
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "train", str(config), "--nproc-per-node",
                           str(nproc)], cwd=workspace, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})
    state = workspace / "out" / name / "checkpoint-12" / "trainer_state.json"
    history = json.loads(state.read_text())["log_history"] if state.exists() else []
    return proc, history


def test_deepspeed_zero2_on_two_processes(workspace):
    """ZeRO-3's counterpart, full fine-tuning on 3 then 2 processes, is
    tests/test_train_reshape_three.py (the namespace cluster)."""
    proc, history = train(workspace, "zero2", 2, extra="deepspeed: zero2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "world size: 2" in proc.stdout + proc.stderr
    losses = [e["loss"] for e in history if "loss" in e]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert_final_weights_are_the_gathered_ones(workspace / "base", workspace / "out" / "zero2")


def assert_final_weights_are_the_gathered_ones(base: Path, out: Path, step: int = 12) -> None:
    """The saved model loads, holds no empty (still sharded) tensor, equals the fp32 weights DeepSpeed gathers
    from the last checkpoint's (`step`) ZeRO shards, and differs from the base (it trained)."""
    import torch
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(out).state_dict()
    gathered = get_fp32_state_dict_from_zero_checkpoint(str(out / f"checkpoint-{step}"))
    untrained = AutoModelForCausalLM.from_pretrained(base).state_dict()
    assert saved and all(t.numel() > 0 for t in saved.values()), {k: t.shape for k, t in saved.items()}
    assert set(gathered) <= set(saved), set(gathered) - set(saved)
    for name, tensor in gathered.items():
        assert torch.equal(saved[name].float(), tensor.float()), name
    assert any(not torch.equal(saved[name], untrained[name]) for name in gathered)


def test_dpo_on_preference_pairs(workspace, tmp_path):
    job_dir = tmp_path / "job"  # as a launched job's folder: rank 0 writes its progress there for `orch status`
    job_dir.mkdir()
    proc, history = train(workspace, "dpo", 1, env={"ORCH_JOB_DIR": str(job_dir)}, stage="dpo", mode="lora",
                          data="data/prefs.jsonl", packing="false", extra="dpo: {beta: 0.1}", lr=5e-3)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    logged = [e for e in history if "loss" in e]
    assert logged and all("rewards/chosen" in e and "rewards/rejected" in e for e in logged)
    assert logged[-1]["rewards/margins"] > logged[0]["rewards/margins"]  # it learns to prefer "chosen"
    assert (workspace / "out" / "dpo" / "adapter_model.safetensors").exists()
    progress = json.loads((job_dir / "progress.json").read_text())
    assert progress["step"] == progress["total"] == 12 and progress["eta_s"] == 0 and progress["loss"] > 0
