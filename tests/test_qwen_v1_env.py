"""orch in the env a model needs, keeping its versions: `pip install -e ".[train,serve]"` into an env with
transformers 4.44.0 / peft 0.12.0 / accelerate 0.34.0 (the FM9G guide's) changes none of them and every local
command runs there; and the ms-swift Qwen-7B-Chat v1 flow, on transformers 4.40.2 / peft 0.12.0 / accelerate 0.34.2
(ChatGLM3 and Qwen v1 users' env), with orch installed the same way, and with nodes that have that env and no orch.

The envs are the seed envs of scripts/seed_env.sh seen through a `.pth` file by an empty venv on the same Python:
pip sees their packages as installed (and would install any upgrade into the new venv, where the test would see it),
so the install really runs, in seconds, and the shared seed envs stay without orch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.needs import need_module
from tests.orch_cli import orch, orch_serve
from tests.test_seed_env import env_python, inventory, launched_ok

REPO = Path(__file__).resolve().parent.parent
FM9G_ENV = Path(os.environ.get("ORCH_SEED_ENV", REPO / ".venvs" / "fm9g"))
TF440_ENV = Path(os.environ.get("ORCH_TF440_ENV", REPO / ".venvs" / "tf440"))
STACK = ("transformers", "peft", "accelerate", "tokenizers", "torch")
ROWS = [{"query": f"what is {i} plus {i}?", "response": f"It is {2 * i}."} for i in range(16)]


def versions(python: Path) -> dict[str, str]:
    code = f"import json; from importlib.metadata import version; print(json.dumps({{n: version(n) for n in {STACK}}}))"
    return json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True,
                                     cwd="/").stdout)


def user_env(seed: Path, folder: Path) -> tuple[Path, str]:
    """A venv on the seed env's packages with orch installed as a user would: (its python, pip's output)."""
    seed_python = env_python(seed, "the seed env")
    subprocess.run([str(seed_python), "-m", "venv", "--without-pip", str(folder)], check=True)
    purelib = subprocess.run([str(seed_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    mine = Path(sysconfig.get_paths(vars={"base": str(folder), "platbase": str(folder)})["purelib"])
    mine.mkdir(parents=True, exist_ok=True)
    (mine / "_seed_env.pth").write_text(purelib + "\n")
    python = folder / "bin" / "python"
    pip = subprocess.run([str(python), "-m", "pip", "install", "-e", f"{REPO}[train,serve]"], capture_output=True,
                         text=True, timeout=600)
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    return python, pip.stdout


def run(python: Path, *args: str, cwd: Path, timeout: float = 600, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`orch ARGS...` from the env's own entry point."""
    proc = subprocess.run([str(python.parent / "orch"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, input=stdin, env={**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, f"orch {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def lora_yaml(model: Path, extra: str = "", mode: str = "lora", data: str = "") -> str:
    return (f"model: {model}\ntrust_remote_code: true\nfinetuning: {mode}\n"
            f"data: {{train: [train.jsonl], max_length: 96{data}}}\n"
            f"lora: {{r: 4, alpha: 8, target_modules: all-linear}}\n{extra}"
            f"training_args: {{output_dir: out/{mode}, max_steps: 2, per_device_train_batch_size: 4, learning_rate: 1.0e-3, "
            "logging_steps: 1, save_steps: 10, report_to: none}\n")


def build_beside_install(seed: Path, code: str) -> subprocess.Popen:
    """Run `code` (a test model's build) with the seed env's python and this checkout importable, in the background:
    the same packages the user's venv sees, while pip installs orch into that venv."""
    return subprocess.Popen([str(env_python(seed, "the seed env")), "-c", code], cwd="/", stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def built(proc: subprocess.Popen) -> None:
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]


@pytest.mark.slow
def test_install_into_a_transformers_4_44_env_keeps_its_versions_and_every_command_runs(tmp_path: Path):
    before = versions(env_python(FM9G_ENV, "the seed env"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    building = build_beside_install(FM9G_ENV, f"from orchestrator.train.tiny import build_tiny_model; "
                                              f"build_tiny_model({str(project / 'base')!r})")
    python, pip_out = user_env(FM9G_ENV, tmp_path / "env")
    built(building)
    assert versions(python) == before and before["transformers"] == "4.44.0" and before["peft"] == "0.12.0" \
        and before["accelerate"] == "0.34.0", pip_out[-2000:]
    # with generation-based evaluation on data.test after training
    config = lora_yaml(project / "base", extra="generation: {max_new_tokens: 4}\n", data=", test: train.jsonl")
    (project / "lora.yaml").write_text(config.replace("trust_remote_code: true\n", ""))
    with ThreadPoolExecutor(max_workers=2) as pool:  # side by side: neither needs the other's result
        index = pool.submit(run, python, "data", "index", "train.jsonl", "--tokenizer", "base", "-o", "idx",
                            cwd=project)
        preview = pool.submit(run, python, "data", "preview", "train.jsonl", "--tokenizer", "base", cwd=project)
    index.result()
    assert "template" in preview.result().stdout
    trained = run(python, "train", "lora.yaml", "yes", cwd=project)
    assert "transformers 4.44.0" in trained.stdout + trained.stderr
    assert len((project / "out" / "lora" / "predictions_test.jsonl").read_text().splitlines()) == len(ROWS)
    run(python, "merge", "--adapter", "out/lora", "--output", "merged", cwd=project)
    answer = run(python, "chat", "merged", "--max-new-tokens", "4", "--temperature", "0", cwd=project, stdin="hi\n")
    assert answer.stdout.strip(), answer.stderr[-2000:]
    assert versions(python) == before


@pytest.fixture(scope="module")
def qwen_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(orch installed into the transformers 4.40.2 env, a project with the Qwen-v1-shaped model built there)."""
    folder = tmp_path_factory.mktemp("tf440")
    before = versions(env_python(TF440_ENV, "the ChatGLM3/Qwen v1 seed env"))
    project = folder / "project"
    project.mkdir()
    (project / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    building = build_beside_install(TF440_ENV, f"from tests.remote_qwen import build_qwen_model; "
                                               f"build_qwen_model({str(project / 'qwen')!r})")
    python, pip_out = user_env(TF440_ENV, folder / "env")
    built(building)
    assert versions(python) == before and before["transformers"] == "4.40.2", pip_out[-2000:]
    return python, project


SWIFT = """\
sft_type: {mode}
custom_train_dataset_path: [train.jsonl]
train_dataset_sample: 6
self_cognition_sample: 4
model_name: [小黄, Xiao Huang]
model_author: [魔搭, ModelScope]
max_length: 128
lora_target_modules: ALL
lora_rank: 4
trust_remote_code: true
training_args: {{output_dir: out/{mode}, max_steps: 2, per_device_train_batch_size: 4, learning_rate: 1.0e-3,
                logging_steps: 1, save_steps: 10, report_to: none}}
"""


@pytest.mark.slow
def test_qwen_v1_swift_flow_on_transformers_4_40(qwen_env):
    need_module("openai")
    from openai import OpenAI

    python, project = qwen_env
    for mode in ("lora", "full"):
        (project / f"swift_{mode}.yaml").write_text(SWIFT.format(mode=mode))
    with ThreadPoolExecutor(max_workers=2) as pool:  # side by side: each is mostly one process importing its stack
        trained = {mode: pool.submit(run, python, "train", f"swift_{mode}.yaml", "--model", "qwen", "yes",
                                     cwd=project) for mode in ("lora", "full")}
    for mode, done in trained.items():
        out = done.result()
        log = out.stdout + out.stderr
        assert "transformers 4.40.2" in log and "end-of-document token <|endoftext|>" in log
        assert "train: 10 samples" in log  # 6 drawn from the user's rows, then the 4 identity rows
        assert json.loads((project / "out" / mode / "orch_template.json").read_text())["template"] == "qwen"
    # the prompt is Qwen's chat() layout, system prompt included, token for token (worked out beside the merge and
    # the server)
    prompt = subprocess.Popen([str(python), "-c", f"""
from orchestrator.train.model import load_tokenizer
from orchestrator.train.data.prompting import generation_prompt
from orchestrator.train.data.templates import resolve_template
tok = load_tokenizer({str(project / 'qwen')!r}, True)
ids = generation_prompt([{{"role": "user", "content": "what is 2 plus 2?"}}], tok, resolve_template("qwen", tok))
print(len(ids)); print(repr(tok.decode(ids)))
"""], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    run(python, "merge", "--adapter", "out/lora", "--output", "merged", "--trust-remote-code", cwd=project)
    assert json.loads((project / "merged" / "orch_template.json").read_text())["template"] == "qwen"
    with orch_serve(str(project / "out" / "lora"), "--trust-remote-code", python=str(python),
                    env={"PYTHONPATH": "", "HF_HUB_OFFLINE": "1"}) as (_, url):
        reply = OpenAI(base_url=f"{url}/v1", api_key="none").chat.completions.create(
            model="lora", messages=[{"role": "user", "content": "what is 2 plus 2?"}], max_tokens=6, temperature=0)
    stdout, stderr = prompt.communicate(timeout=300)
    assert prompt.returncode == 0, stderr[-3000:]
    expected = stdout.splitlines()
    assert expected[1] == repr("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                               "what is 2 plus 2?<|im_end|>\n<|im_start|>assistant\n")
    assert reply.usage.prompt_tokens == int(expected[0])
    assert reply.choices[0].finish_reason in ("stop", "length")


@pytest.mark.cluster
@pytest.mark.slow
def test_two_nodes_with_the_users_env_and_no_orch_train_qwen_v1(qwen_env, env, cluster, tmp_path):
    python, project = qwen_env
    seed_python = env_python(TF440_ENV, "the ChatGLM3/Qwen v1 seed env")
    env = {**env, "ORCH_CLUSTER": str(inventory(cluster, tmp_path, seed_python))}
    job = project / "launch"
    job.mkdir(exist_ok=True)
    (job / "swift.yaml").write_text(SWIFT.format(mode="lora"))
    proc = orch("launch", "--nodes", "node0,node1", "--nproc-per-node", "1", "--model", str(project / "qwen"),
                "--data-dir", str(project), "swift.yaml", cwd=job, env=env, timeout=600)
    status = launched_ok(proc, env)
    assert "world size: 2" in proc.stdout and "transformers 4.40.2" in proc.stdout, status
    assert "train: 10 samples" in proc.stdout and "end-of-document token <|endoftext|>" in proc.stdout + proc.stderr
