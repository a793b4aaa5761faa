"""Qwen-7B/14B-Chat v1's own code, as its tokenizer and attention behave (`tests/remote_qwen`): a `bytes`
vocabulary, no eos/pad token (only an end-of-document id), no chat template, attention that reads a 2-D padding
mask only; plus what every model folder's own code imports. On the main stack; tests/test_qwen_v1_env.py runs the
ms-swift flow on transformers 4.40.2 and installs orch into a user's env."""

from __future__ import annotations

import json
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from orchestrator.train.data.encoding import encode
from orchestrator.train.data.samples import Sample
from orchestrator.train.data.templates import resolve_template
from tests.needs import need_module
from tests.orch_cli import assert_refused, orch
from tests.remote_qwen import build_qwen_model

NOTE = "note: the tokenizer has no eos or pad token; using the model's end-of-document token <|endoftext|>"
ROWS = [{"query": f"what is {i} plus {i}?", "response": f"It is {2 * i}."} for i in range(12)]


@pytest.fixture(scope="module")
def qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_module("tiktoken")
    return build_qwen_model(tmp_path_factory.mktemp("qwen") / "model")


@pytest.fixture(scope="module")
def qwen_tok(qwen: Path):
    from orchestrator.train.model import load_tokenizer

    return load_tokenizer(str(qwen), trust_remote_code=True)


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_the_fixture_behaves_as_qwen_v1s_tokenizer(qwen: Path):
    from transformers import AutoTokenizer

    raw = AutoTokenizer.from_pretrained(qwen, trust_remote_code=True)
    assert raw.eos_token is None and raw.pad_token is None and raw.chat_template is None
    assert all(isinstance(token, bytes) for token in raw.get_vocab())
    assert raw.convert_tokens_to_ids("<|endoftext|>") == raw.eod_id


def test_end_of_document_token_is_eos_and_pad_and_ends_pretraining_text(qwen_tok, capsys):
    assert qwen_tok.eos_token == "<|endoftext|>" and qwen_tok.eos_token_id == qwen_tok.pad_token_id == qwen_tok.eod_id
    ids, _ = encode(Sample(text="plain text"), qwen_tok, "auto", stage="pt")
    assert ids[-1] == qwen_tok.eod_id


def test_auto_is_qwen_with_the_system_prompt_its_chat_adds(qwen_tok):
    assert resolve_template("auto", qwen_tok).name == "qwen"
    ids, labels = encode(Sample(turns=[("user", "hi"), ("assistant", "hello")]), qwen_tok, "auto")
    assert qwen_tok.decode(ids).startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    trained = [t for t, label in zip(ids, labels) if label != -100]
    assert qwen_tok.decode(trained) == "hello<|im_end|>"


def test_data_index_and_preview_take_a_bytes_vocabulary(qwen: Path, rows: Path, tmp_path: Path):
    index = orch("data", "index", str(rows), "--tokenizer", str(qwen), "--trust-remote-code", "-o",
                 str(tmp_path / "idx"))
    assert index.returncode == 0 and NOTE in index.stderr, index.stderr[-2000:]
    preview = orch("data", "preview", str(rows), "--tokenizer", str(qwen), "--trust-remote-code")
    assert preview.returncode == 0 and "(template qwen)" in preview.stdout, preview.stderr[-2000:]


def test_self_cognition_rows_join_after_train_samples_is_drawn(qwen_tok, rows: Path, tmp_path: Path):
    from orchestrator.train.data.dataset import build_sft_datasets
    from orchestrator.train.data.spec import DataSpec
    from orchestrator.train.self_cognition import self_cognition_file

    identity = self_cognition_file(["小黄", "Xiao Huang"], ["魔搭", "ModelScope"], 8, tmp_path)
    spec = DataSpec(train=[str(rows)], added=[str(identity)], train_samples=5, eval_ratio=0.2,
                    cache_dir=str(tmp_path / "cache"))
    train, evals, report = build_sft_datasets(spec, qwen_tok)
    texts = [qwen_tok.decode(train[i]["input_ids"]) for i in range(len(train))]
    assert len(train) == 5 + 8 and sum("Xiao Huang" in t or "小黄" in t for t in texts) == 8
    assert not any("Huang" in qwen_tok.decode(evals[i]["input_ids"]) for i in range(len(evals)))


def test_packing_is_measured_on_the_models_own_attention(qwen: Path, tiny_model: Path, qwen_tok, tokenizer):
    from transformers import AutoModelForCausalLM

    from orchestrator.train.data.collate import make_collator
    from orchestrator.train.packing_check import honours_packing

    own = AutoModelForCausalLM.from_pretrained(qwen, trust_remote_code=True)
    ok, why = honours_packing(own, make_collator(qwen_tok, True), len(qwen_tok))
    assert not ok and "attend to each other" in why
    builtin = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert honours_packing(builtin, make_collator(tokenizer, True), len(tokenizer)) == (True, "")


def test_answers_end_at_the_formats_end_of_turn(qwen: Path, qwen_tok):
    from transformers import AutoModelForCausalLM

    from orchestrator.serve.generation import Engine

    engine = Engine(AutoModelForCausalLM.from_pretrained(qwen, trust_remote_code=True), qwen_tok)
    assert engine.template.name == "qwen" and {qwen_tok.im_end_id, qwen_tok.eod_id} <= engine.eos_ids
    prompt = engine.prompt_ids([{"role": "user", "content": "hi"}])
    assert qwen_tok.decode(prompt) == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                                       "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def _config(folder: Path, model: Path, extra: str = "", data: str = "") -> Path:
    path = folder / "job.yaml"
    path.write_text(f"model: {model}\ntrust_remote_code: true\nfinetuning: lora\n"
                    f"data: {{train: [train.jsonl], max_length: 64{data}}}\nlora: {{r: 4, target_modules: all-linear}}\n"
                    f"{extra}training_args: {{output_dir: out, max_steps: 1, per_device_train_batch_size: 2, "
                    "report_to: none, save_steps: 10}\n")
    return path


def test_packing_with_attention_that_mixes_samples_is_refused_in_one_line(qwen: Path, rows: Path):
    config = _config(rows.parent, qwen, data=", packing: true")
    proc = orch("train", str(config), "yes", cwd=rows.parent)
    assert_refused(proc, "data.packing:", str(qwen), "attend to each other", "set packing: false")


def test_code_that_imports_a_missing_package_is_named_in_one_line(qwen: Path, rows: Path, tmp_path: Path):
    model = tmp_path / "model"
    shutil.copytree(qwen, model)
    code = (model / "modeling_tinyqwen.py").read_text()
    (model / "modeling_tinyqwen.py").write_text("import orch_absent_package\n" + code)
    others = (["data", "index", str(rows), "--tokenizer", str(model), "-o", str(tmp_path / "i")], ["chat", str(model)])
    with ThreadPoolExecutor(max_workers=3) as pool:  # side by side: each is one process importing its stack
        training = pool.submit(orch, "train", str(_config(rows.parent, model)), "yes", cwd=rows.parent)
        refusals = [pool.submit(orch, *command, "--trust-remote-code") for command in others]
    assert_refused(training.result(), "modeling_tinyqwen.py", "imports orch_absent_package",
                   "pip install orch_absent_package")
    for refusal in refusals:
        proc = refusal.result()
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and "imports orch_absent_package" in lines[0], proc.stderr


def test_launch_preflight_reads_the_model_and_data_dir_overrides(tmp_path: Path):
    from orchestrator.jobs.worker import needed_packages

    (tmp_path / "job.yaml").write_text("finetuning: lora\ndata: {train: [train.jsonl]}\n")
    command = ["-m", "orchestrator.train", "job.yaml", "--model", "/models/qwen", "--data-dir", "/data"]
    assert {"torch", "transformers", "peft"} <= set(needed_packages(command, tmp_path))


def test_a_node_lacking_the_models_imports_is_named_by_the_preflight(qwen: Path, tmp_path: Path):
    import subprocess

    from orchestrator.cluster import doctor
    from orchestrator.cluster.inventory import Node
    from orchestrator.jobs.worker import env_problems, model_folders

    model = tmp_path / "model"
    shutil.copytree(qwen, model)
    (model / "tokenization_tinyqwen.py").write_text("import orch_absent_package\n"
                                                    + (qwen / "tokenization_tinyqwen.py").read_text())
    node = Node(name="node1", host=None, addr="127.0.0.1", gpus=0, workdir=str(tmp_path), python=sys.executable)
    folders = model_folders({str(model): "job.yaml: model", str(tmp_path / "d.jsonl"): "job.yaml: data.train[0]"})
    assert folders == (str(model),)
    shell = doctor.facts_command(node, "127.0.0.1", None, False, code_dirs=folders)
    facts = doctor.parse_facts("node1", subprocess.run(["bash", "-c", shell], capture_output=True, text=True).stdout)
    assert env_problems([facts], {}) == [
        f"node1: {model}: the model's own code (tokenization_tinyqwen.py) imports orch_absent_package, not installed "
        "on this node: pip install orch_absent_package"]


def test_dpo_pairs_are_laid_out_in_the_sft_chat_format_with_the_end_of_document_pad(qwen: Path, tmp_path: Path):
    need_module("trl")
    pairs = [{"prompt": f"say {i}", "chosen": f"{i}", "rejected": "no"} for i in range(4)]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    (tmp_path / "dpo.yaml").write_text(
        f"model: {qwen}\ntrust_remote_code: true\nstage: dpo\nfinetuning: lora\n"
        "data: {train: [pairs.jsonl], max_length: 96}\nlora: {r: 4, target_modules: all-linear}\n"
        "training_args: {output_dir: out, max_steps: 1, per_device_train_batch_size: 2, report_to: none}\n")
    proc = orch("train", str(tmp_path / "dpo.yaml"), "yes", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert NOTE in proc.stderr
    assert json.loads((tmp_path / "out" / "orch_template.json").read_text())["template"] == "qwen"

    from orchestrator.train.config import load_config
    from orchestrator.train.dpo import preference_dataset
    from orchestrator.train.model import load_tokenizer

    cfg = load_config(str(tmp_path / "dpo.yaml"), data_dir=str(tmp_path))
    tok = load_tokenizer(str(qwen), True)
    assert tok.pad_token_id == tok.eod_id  # DPO pads with the end-of-document token
    first = preference_dataset(cfg.data.train, cfg, resolve_template("auto", tok))[0]
    assert first["prompt"] == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nsay 0"
                               "<|im_end|>\n<|im_start|>assistant\n")
    assert first["chosen"] == "0<|im_end|>" and first["rejected"] == "no<|im_end|>"


def test_qwen_v1_on_transformers_5_is_named_before_loading(tmp_path: Path):
    from orchestrator.train.compat import version
    from orchestrator.train.remote_code import known_break

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen", "auto_map": {"AutoConfig": "c.C"}}))
    # the August 2023 revision's tokenizer reads its vocabulary before setting it: no load from transformers 4.34
    (tmp_path / "tokenization_qwen.py").write_text("class QWenTokenizer:\n    def get_vocab(self): ...\n")
    assert "no attribute 'mergeable_ranks'" in known_break(tmp_path)
    (tmp_path / "tokenization_qwen.py").write_text("class QWenTokenizer:\n    def _add_tokens(self): ...\n")
    line = known_break(tmp_path)
    if version("transformers") >= (5,):
        assert line and "Qwen v1" in line and "transformers 4.40-4.44" in line
    else:
        assert line is None
