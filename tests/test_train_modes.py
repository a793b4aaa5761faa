"""The training worker in one process: full, LoRA, QLoRA (4-bit NF4 on CPU) and freeze each learn a small
memorisable set; LoRA and QLoRA adapters merge into models that load alone and give the same logits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.orch_cli import demo_project

ROOT = Path(__file__).resolve().parent.parent
MODES = ("full", "lora", "qlora", "freeze")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """(base model, work folder, {mode: first/last loss and output files}) after training every mode."""
    workspace = tmp_path_factory.mktemp("train-modes")
    demo_project(workspace / "project")
    base, data = workspace / "project" / "base", workspace / "project" / "data" / "train.jsonl"
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "train_modes.py"), str(base), str(data),
                           str(workspace / "runs"), ",".join(MODES)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return base, workspace / "runs", json.loads(line[len("RESULT "):])


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_learns(trained, mode):
    _, _, result = trained
    first, last = result[mode]["first"], result[mode]["last"]
    assert last < first - 0.25, (mode, first, last)
    weights = "adapter_model.safetensors" if mode in ("lora", "qlora") else "model.safetensors"
    assert weights in result[mode]["files"] and "tokenizer.json" in result[mode]["files"]


def test_qlora_trains_on_4bit_base_layers(trained):
    seen = trained[2]["qlora"]
    # every linear of the 2 decoder layers (q, k, v, o, gate, up, down) is a bitsandbytes Linear4bit under LoRA
    assert seen["linear4bit"] == 14 and seen["plain_linear_in_layers"] == 0, seen
    assert seen["trainable_moved"] == seen["trainable"] > 0, seen


def test_freeze_leaves_frozen_parameters_bit_identical(trained):
    seen = trained[2]["freeze"]
    assert seen["frozen"] > 0 and seen["frozen_moved"] == [], seen
    assert seen["trainable_moved"] == seen["trainable"] > 0, seen  # and every trainable one moved


@pytest.mark.parametrize("mode", ["lora", "qlora"])
def test_merged_model_loads_alone_and_matches_base_plus_adapter(trained, tmp_path, mode):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from orchestrator.train.merge import merge_adapter

    base, runs, _ = trained
    adapter = runs / mode
    merged = merge_adapter(adapter, tmp_path / "merged")  # the base is found from adapter_config.json
    ids = torch.tensor([[1, 85, 91, 407, 79, 201, 292, 257, 284, 346, 2]])
    with torch.no_grad():
        alone = AutoModelForCausalLM.from_pretrained(merged).eval()(ids).logits
        reference_base = AutoModelForCausalLM.from_pretrained(base)  # QLoRA: compare against the unquantised base
        reference = PeftModel.from_pretrained(reference_base, adapter).eval()(ids).logits
        untouched = AutoModelForCausalLM.from_pretrained(base).eval()(ids).logits
    assert torch.allclose(alone, reference, atol=1e-4), (alone - reference).abs().max()
    assert not torch.allclose(alone, untouched, atol=1e-3)  # the adapter did change the model
