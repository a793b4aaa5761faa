"""`orch chat` and `orch serve` as a user runs them: real processes, a LoRA adapter made with peft, piped stdin."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.needs import need_module
from click.testing import CliRunner

from orchestrator.cli import cli
from tests.orch_cli import orch_serve

torch = need_module("torch")
need_module("peft")

ORCH = [sys.executable, "-m", "orchestrator"]
ENV = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """A LoRA adapter (non-zero init, so it changes answers) saved the way training saves one, and its model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(base, config).eval()
    folder = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(folder)
    return folder, model, AutoTokenizer.from_pretrained(tiny_model)


def greedy_turns(model, tokenizer, questions: list[str], max_new_tokens: int) -> list[str]:
    """Answers to a multi-turn conversation, each turn seeing the earlier questions and answers."""
    messages: list[dict] = []
    answers = []
    for question in questions:
        messages.append({"role": "user", "content": question})
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False)
        answer = tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)
        messages.append({"role": "assistant", "content": answer})
        answers.append(answer)
    return answers


def test_piped_chat_with_a_moved_adapter_keeps_the_conversation(adapter, tiny_model: Path) -> None:
    folder, model, tokenizer = adapter
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = "/where/the/base/used/to/be"
    config_path.write_text(json.dumps(config))
    questions = ["What is LoRA?", "你好", "And again?"]
    expected = greedy_turns(model, tokenizer, questions, 8)
    with model.disable_adapter():  # get_base_model() would still carry the injected LoRA layers
        base_only = greedy_turns(model, tokenizer, questions[:1], 8)
    assert expected[0] != base_only[0], "the adapter should change the answer"

    moved = subprocess.run([*ORCH, "chat", str(folder)], input="hi\n", capture_output=True, text=True,
                           env=ENV, timeout=60)
    assert moved.returncode == 2
    assert moved.stderr.startswith("orch: error: base model not found") and "--base" in moved.stderr

    done = subprocess.run(
        [*ORCH, "chat", str(folder), "--base", str(tiny_model), "--temperature", "0", "--max-new-tokens", "8"],
        input="\n".join(questions) + "\n", capture_output=True, text=True, env=ENV, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "".join(f"{a}\n" for a in expected)


def test_piped_chat_clear_and_exit(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    fresh = greedy_turns(model, tokenizer, ["second question"], 6)
    done = subprocess.run(
        [*ORCH, "chat", str(tiny_model), "--temperature", "0", "--max-new-tokens", "6"],
        input="first question\n/clear\nsecond question\n/exit\nnever asked\n",
        capture_output=True, text=True, env=ENV, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    first = greedy_turns(model, tokenizer, ["first question"], 6)
    assert done.stdout == f"{first[0]}\n{fresh[0]}\n"


def test_serve_command_answers_with_key_and_stops_on_ctrl_c(tiny_model: Path) -> None:
    import httpx

    with orch_serve(str(tiny_model), "--model-name", "my-model", "--api-key", "k1", env=ENV) as (proc, url):
        resp = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer k1"}, timeout=5)
        assert [m["id"] for m in resp.json()["data"]] == ["my-model"]
        assert httpx.get(f"{url}/v1/models", timeout=5).status_code == 401
        page = httpx.get(f"{url}/", timeout=5)
        assert page.status_code == 200 and "<textarea" in page.text
        proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop with exit 0, no "Aborted!", no traceback
        assert proc.wait(timeout=20) == 0
        rest = proc.stderr.read()
        assert "Traceback" not in rest and "Aborted" not in rest
        with socket.socket() as again:  # the port is free again
            again.bind(("127.0.0.1", int(url.rsplit(":", 1)[1])))


def test_cli_mistakes_are_one_line_errors_with_exit_2(tmp_path: Path, tiny_model: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["chat", str(tmp_path / "missing")])
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        f"orch: error: model folder not found: {tmp_path / 'missing'}"
    ]
    result = runner.invoke(cli, ["serve", str(tiny_model), "--base", str(tiny_model), "--port", "0"])
    assert result.exit_code == 2 and "only for adapter folders" in result.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = runner.invoke(cli, ["serve", str(tiny_model), "--port", str(port)])
    assert result.exit_code == 2 and result.output.startswith(f"orch: error: cannot listen on 127.0.0.1:{port}")
    assert len(result.output.strip().splitlines()) == 1
