"""Models that ship their own code (the ChatGLM3-like tiny model of tests/remote_model: `auto_map`, a SentencePiece
tokenizer that pads only on the left, its own modeling code).

Without `trust_remote_code` / `--trust-remote-code` every command stops in one line naming the folder and the key
or flag, exit 2, before any weights load, and never asks transformers' `[y/N]` question (stdin is piped with "y"
answers, or closed). With it, the model trains (LoRA, then resumes), merges and serves. The guide's own configs
(lora.yaml, ptuning_v2.yaml) are tests/test_chatglm3_guide.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.train.remote_code import custom_code
from tests.orch_cli import orch, orch_serve
from tests.remote_model import CODE_FILES, build_remote_model, chatglm3_reply

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "orchestrator" / "sample_data" / "chat_zh_en.jsonl"
ENV = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def remote_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_remote_model(tmp_path_factory.mktemp("tinyglm") / "model")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, remote_model: Path) -> Path:
    """A project folder with 40 chat samples, our LoRA config (2 steps) and an adapter folder of the remote base."""
    folder = tmp_path_factory.mktemp("remote-project")
    lines = SAMPLE_DATA.read_text(encoding="utf-8").splitlines()[:40]
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "lora.yaml").write_text(lora_config(remote_model, steps=2, trust=False))
    adapter = folder / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "base_model_name_or_path": str(remote_model), "r": 4, "target_modules": ["query_key_value"]}))
    return folder


def lora_config(model: Path, steps: int, trust: bool, resume: bool = False) -> str:
    return (f"model: {model}\ntrust_remote_code: {str(trust).lower()}\nfinetuning: lora\n"
            "data: {train: [train.jsonl], template: chatglm3, max_length: 96}\n"
            "lora: {r: 8, alpha: 16, dropout: 0.0, target_modules: all-linear}\n"
            f"resume_from_checkpoint: {'latest' if resume else 'no'}\n"
            f"training_args: {{output_dir: out/lora, max_steps: {steps}, per_device_train_batch_size: 4, "
            "learning_rate: 1.0e-2, logging_steps: 1, save_steps: 2, report_to: none, seed: 1}\n")


def test_code_is_found_only_where_transformers_has_no_class_of_its_own(remote_model, tiny_model, tmp_path):
    assert [Path(f).name for f in custom_code(remote_model, remote_model)] == sorted(CODE_FILES[:2]) + [CODE_FILES[2]]
    assert custom_code(tiny_model, tiny_model) == []
    llama_with_map = tmp_path / "llama"
    shutil.copytree(tiny_model, llama_with_map)  # an auto_map on a model type transformers knows: no code runs
    config = json.loads((llama_with_map / "config.json").read_text())
    (llama_with_map / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoConfig": "x.Y"}}))
    assert custom_code(llama_with_map, llama_with_map) == []


def _commands(model: Path, ws: Path) -> dict[str, list[str]]:
    return {
        "train": ["train", str(ws / "lora.yaml")],
        "worker": ["-m", "orchestrator.train", str(ws / "lora.yaml")],
        "chat": ["chat", str(model)],
        "serve": ["serve", str(model), "--port", "0"],
        "merge": ["merge", "--adapter", str(ws / "adapter"), "--output", str(ws / "merged-refused")],
        "data index": ["data", "index", str(ws / "train.jsonl"), "--tokenizer", str(model), "-o", str(ws / "idx")],
        "data preview": ["data", "preview", str(ws / "train.jsonl"), "--tokenizer", str(model)],
    }


def _refusal(code: int, stderr: str, command: str, remote_model: Path, workspace: Path) -> None:
    """One line naming the folder and the key/flag, exit 2, no prompt, nothing written."""
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert len(lines) == 1 and "ships its own code" in lines[0] and str(remote_model) in lines[0], stderr
    wanted = "trust_remote_code: true" if command in ("train", "worker") else "--trust-remote-code"
    assert wanted in lines[0] and "[y/N]" not in stderr and not (workspace / "merged-refused").exists()


@pytest.mark.parametrize("command", ["train", "worker"])
def test_without_the_key_training_stops_in_one_line_and_never_prompts(remote_model, workspace, command):
    args = _commands(remote_model, workspace)[command]
    argv = [sys.executable, *args] if command == "worker" else [sys.executable, "-m", "orchestrator", *args]
    proc = subprocess.run(argv, input="y\ny\ny\n", capture_output=True, text=True, cwd=workspace,
                          env={**os.environ, **ENV}, timeout=120)
    _refusal(proc.returncode, proc.stderr + proc.stdout, command, remote_model, workspace)


@pytest.mark.parametrize("command", ["chat", "serve", "merge", "data index", "data preview"])
def test_without_the_flag_every_command_stops_in_one_line_and_never_prompts(remote_model, workspace, command):
    from click.testing import CliRunner

    from orchestrator.cli import cli

    result = CliRunner().invoke(cli, _commands(remote_model, workspace)[command], input="y\ny\ny\n")
    _refusal(result.exit_code, result.output, command, remote_model, workspace)


def test_chat_with_stdin_closed_stops_in_one_line(remote_model):
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "chat", str(remote_model)], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env={**os.environ, **ENV}, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.slow
def test_lora_with_the_key_trains_resumes_merges_and_serves(remote_model, workspace):
    import openai
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    (workspace / "lora.yaml").write_text(lora_config(remote_model, steps=2, trust=True))
    first = orch("train", "lora.yaml", cwd=workspace, env=ENV, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    out = workspace / "out" / "lora"
    assert (out / "checkpoint-2").is_dir() and (out / "adapter_model.safetensors").is_file()
    (workspace / "lora.yaml").write_text(lora_config(remote_model, steps=4, trust=False, resume=True))
    resumed = orch("train", "lora.yaml", "--trust-remote-code", cwd=workspace, env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {out / 'checkpoint-2'}" in resumed.stdout
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4]

    merged = workspace / "merged"
    done = orch("merge", "--adapter", str(out), "--output", str(merged), "--trust-remote-code", env=ENV)
    assert done.returncode == 0, done.stderr
    assert {"modeling_tinyglm.py", "tokenization_tinyglm.py"} <= {p.name for p in merged.iterdir()}

    # the merged model answers through `orch serve` exactly as base + adapter answer through ChatGLM3's own chat
    # path (orch chat is exercised by tests/test_chatglm3_guide.py)
    tokenizer = AutoTokenizer.from_pretrained(remote_model, trust_remote_code=True)
    base = AutoModelForCausalLM.from_pretrained(remote_model, trust_remote_code=True)
    expected = chatglm3_reply(PeftModel.from_pretrained(base, out).eval(), tokenizer, "你好")
    with orch_serve(str(merged), "--trust-remote-code", "--model-name", "glm", env=ENV) as (_, url):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=120)
        reply = client.chat.completions.create(model="glm", messages=[{"role": "user", "content": "你好"}],
                                               max_tokens=6, temperature=0)
    assert reply.choices[0].message.content.strip() == expected
