"""ChatGLM3's finetune guide, step by step, on a model that behaves like ChatGLM3-6B (tests/remote_model: its own
code, a SentencePiece tokenizer that pads only on the left, its own P-Tuning v2 prefix encoder, 2-D masks).

- `orch train DATA MODEL lora.yaml yes` with the guide's lora.yaml as written (`evaluation_strategy`,
  `predict_with_generate`, `test_file`, no `target_modules`): LoRA on `query_key_value` only (peft's default for
  chatglm, as the guide's get_peft_config gives), evaluation with generation, test predictions;
- `orch merge` (the tokenizer comes from the base where the saved copy cannot load; written atomically), then
  `orch serve` (real openai client) and `orch chat` answer as ChatGLM3's own chat() does on base + adapter;
- ptuning_v2.yaml trains the model's own prefix encoder (`pre_seq_len`), nothing else; the result is a whole model
  folder that `orch chat` uses with its prefix, and `orch merge` says there is nothing to merge;
- a failure inside the model's own code ends in its traceback and then one orch line naming the file and line.
The same flows on transformers 4.40.2 and 4.44.0 are in tests/test_chatglm3_envs.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.needs import missing

from orchestrator.jobs.states import last_error
from tests.orch_cli import orch, orch_serve
from tests.remote_model import build_remote_model, chatglm3_reply, write_guide_project

ENV = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
QUESTION = "北京是中国的首都吗？"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_remote_model(tmp_path_factory.mktemp("chatglm3") / "model")


@pytest.fixture(scope="module")
def guide_runs(tmp_path_factory: pytest.TempPathFactory, model: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """The guide's data and configs, trained with lora.yaml as finetune_hf.py is called (DATA MODEL CONFIG yes) and,
    side by side (each is mostly one process importing its stack), with ptuning_v2.yaml: (project, that run)."""
    project = write_guide_project(tmp_path_factory.mktemp("guide"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        lora = pool.submit(orch, "train", ".", str(model), "lora.yaml", "yes", "--trust-remote-code", cwd=project,
                           env=ENV, timeout=600)
        ptuning = pool.submit(orch, "train", ".", str(model), "ptuning_v2.yaml", "--trust-remote-code",
                              cwd=project, env=ENV, timeout=600)
    run = lora.result()
    assert run.returncode == 0, run.stderr[-4000:]
    return project, ptuning.result()


@pytest.fixture(scope="module")
def lora_run(guide_runs: tuple[Path, subprocess.CompletedProcess]) -> Path:
    return guide_runs[0]


def _start_chat(folder: Path, question: str = QUESTION) -> subprocess.Popen:
    """`orch chat FOLDER` asked `question`, started in the background (collect it with `_answer`)."""
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "chat", str(folder), "--trust-remote-code",
                             "--temperature", "0", "--max-new-tokens", "6"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **ENV})
    proc.stdin.write(question + "\n")
    proc.stdin.flush()
    return proc


def _answer(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    """The chat's output once it ends (its stdin closed: the end of the conversation)."""
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.slow
def test_guide_lora_yaml_as_written_trains_merges_chats_and_serves(lora_run, model):
    import openai
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = lora_run / "output"
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["target_modules"] == ["query_key_value"] and adapter["r"] == 8 and adapter["lora_alpha"] == 32
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as weights:
        assert weights.keys() and all("query_key_value" in key for key in weights.keys())
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert any("eval_rouge-1" in entry for entry in state["log_history"])  # predict_with_generate ran at eval
    predictions = [json.loads(line) for line in (out / "predictions_test.jsonl").read_text().splitlines()]
    assert len(predictions) >= 6 and all(p["prompt"].startswith("[gMASK]sop<|user|>") for p in predictions)

    chatting = _start_chat(out)  # the adapter folder itself, over its base (side by side with the merge and serve)
    merged = lora_run / "merged"
    done = orch("merge", "--adapter", str(out), "--output", str(merged), "--trust-remote-code", env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    assert AutoTokenizer.from_pretrained(merged, trust_remote_code=True).padding_side == "left"  # it loads
    tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=True)
    base = AutoModelForCausalLM.from_pretrained(model, trust_remote_code=True)
    expected = chatglm3_reply(PeftModel.from_pretrained(base, out).eval(), tokenizer, QUESTION)
    with orch_serve(str(merged), "--trust-remote-code", "--model-name", "glm", env=ENV) as (_, url):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=120)
        reply = client.chat.completions.create(model="glm", messages=[{"role": "user", "content": QUESTION}],
                                               max_tokens=6, temperature=0)
    assert reply.choices[0].message.content.strip() == expected
    chat = _answer(chatting)
    assert chat.returncode == 0 and chat.stdout.strip() == expected, chat.stderr[-3000:]


@pytest.mark.slow
def test_merge_that_fails_leaves_no_output_folder(lora_run, monkeypatch):
    from orchestrator.train import tokenizer_files
    from orchestrator.train.merge import merge_adapter

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tokenizer_files, "restore_if_unloadable", broken)  # after the weights are written
    before = set(lora_run.iterdir())
    with pytest.raises(OSError, match="disk full"):
        merge_adapter(lora_run / "output", lora_run / "merged-broken", trust_remote_code=True)
    assert set(lora_run.iterdir()) == before  # no output folder, no temporary folder


@pytest.mark.slow
def test_guide_ptuning_v2_yaml_trains_the_models_own_prefix_encoder(guide_runs, model):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lora_run, run = guide_runs
    assert run.returncode == 0, run.stderr[-4000:]
    out = lora_run / "output_pt"
    assert json.loads((out / "config.json").read_text())["pre_seq_len"] == 8 and \
        not (out / "adapter_config.json").exists()  # a whole model folder, as finetune_hf.py saves it
    trained, base = load_file(str(out / "model.safetensors")), load_file(str(model / "model.safetensors"))
    assert {k for k in trained if k not in base} == {"transformer.prefix_encoder.embedding.weight"}
    assert all(torch.equal(trained[k], base[k]) for k in base)  # only the prefix encoder trained
    assert "trainable params: 1,024 of" in run.stdout  # 8 virtual tokens x 2 layers x 2 x 2 groups x 16

    chatting = _start_chat(out)  # side by side with the checks below and the refused merge
    tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=True)
    tuned = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    plain = AutoModelForCausalLM.from_pretrained(model, trust_remote_code=True).eval()
    ids = torch.tensor([[5, 17, 42, 99]])
    with torch.no_grad():
        assert float((tuned(input_ids=ids).logits - plain(input_ids=ids).logits).abs().max()) > 1e-4  # prefix used
    refused = orch("merge", "--adapter", str(out), "--output", str(lora_run / "pt-merged"), env=ENV)
    chat = _answer(chatting)
    assert chat.returncode == 0 and chat.stdout.strip() == chatglm3_reply(tuned, tokenizer, QUESTION), chat.stderr

    assert refused.returncode == 2 and "nothing to merge" in refused.stderr and "pre_seq_len 8" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (lora_run / "pt-merged").exists()


def _breaks_on_transformers_5(model: Path, folder: Path) -> Path:
    """A copy of the model whose code reads `config.max_length` in __init__, as ChatGLM3's does (transformers 5's
    PretrainedConfig has no max_length)."""
    import shutil

    shutil.copytree(model, folder)
    code = folder / "modeling_tinyglm.py"
    text = code.read_text()
    marker = "        self.transformer = TinyGLMModel(config)\n"
    code.write_text(text.replace(marker, marker + "        self.max_sequence_length = config.max_length\n"))
    return folder


@pytest.mark.slow
def test_a_failure_in_the_models_own_code_ends_in_one_orch_line(model, lora_run, tmp_path):
    from orchestrator.train.compat import version

    if version("transformers") < (5, 0):
        missing("transformers 5 (the main stack): before 5, config.max_length exists and nothing breaks")
    broken = _breaks_on_transformers_5(model, tmp_path / "broken")
    chatting = _start_chat(broken)  # side by side with the training
    train = orch("train", ".", str(broken), "lora.yaml", "--trust-remote-code", cwd=lora_run, env=ENV, timeout=600)
    chat = _answer(chatting)
    for proc, prefix in ((chat, "orch: error: "), (train, "orch train: error: ")):
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and "Traceback" in proc.stderr, proc.stderr[-3000:]  # the traceback stays
        assert lines[-1].startswith(prefix + "the model's own code failed in __init__ ("), lines[-1]
        assert "modeling_tinyglm.py:" in lines[-1] and "AttributeError" in lines[-1] and "max_length" in lines[-1]
        assert "version incompatibility" in lines[-1] and f"transformers {'.'.join(map(str, version('transformers')))}" \
            in lines[-1]
    assert last_error(train.stderr.splitlines()) == [train.stderr.strip().splitlines()[-1]]  # a job's root cause
