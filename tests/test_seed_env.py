"""The worker runs in the node's own env: `orch launch` ships its code with the job, and it trains in a venv built as
the FM9G guide builds it (transformers 4.44.0, accelerate 0.34.0, peft 0.12; no orch installed), made by
scripts/seed_env.sh. The preflight refuses nodes whose env the worker does not support, one line per node.

The test models (a tiny Llama, and a ChatGLM3-shaped model that ships its own code) are built INSIDE the seed env: a
tokenizer written by tokenizers >= 0.22 does not load in 4.44.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.needs import missing
from tests.orch_cli import job_id_of, job_json, orch

REPO = Path(__file__).resolve().parent.parent
SEED_ENV = Path(os.environ.get("ORCH_SEED_ENV", REPO / ".venvs" / "fm9g"))
OLD_ENV = Path(os.environ.get("ORCH_OLD_ENV", REPO / ".venvs" / "transformers430"))
SAMPLE_DATA = REPO / "orchestrator" / "sample_data" / "chat_zh_en.jsonl"

CONFIG = """\
{model}
stage: sft
finetuning: {mode}
data: {{train: [data/train.jsonl], {data}}}
lora: {{r: 8, alpha: 16, dropout: 0.0, target_modules: all-linear}}
{extra}training_args: {{output_dir: out/{out}, max_steps: {steps}, per_device_train_batch_size: 2,
                 learning_rate: 1.0e-3, logging_steps: 1, save_steps: 1, report_to: tensorboard, seed: 7}}
"""


def env_python(folder: Path, what: str) -> Path:
    """The interpreter of a venv scripts/seed_env.sh builds; in CI its absence fails the test, elsewhere skips."""
    python = folder / "bin" / "python"
    if not python.is_file():
        missing(f"{what} {folder} is missing: run `bash scripts/seed_env.sh` (scripts/setup.sh does)")
    return python


def seed_run(python: Path, code: str, pythonpath: Path = REPO, timeout: float = 300) -> str:
    """Run `code` with the seed env's python and only the worker code of `pythonpath` importable from orch."""
    proc = subprocess.run([str(python), "-c", code], cwd="/", capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(pythonpath), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def seed_python() -> Path:
    python = env_python(SEED_ENV, "the seed env")
    own = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the env's own install, not a checkout's
    probe = subprocess.run([str(python), "-c", "import orchestrator"], cwd="/", capture_output=True, text=True, env=own)
    assert probe.returncode != 0, "orch must not be installed in the seed env: the worker is shipped with the job"
    return python


@pytest.fixture(scope="module")
def seed_project(seed_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's project: a tiny Llama + tokenizer built by transformers 4.44 in the seed env, chat data, configs."""
    folder = tmp_path_factory.mktemp("seed") / "fm9g"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train.jsonl").write_text(SAMPLE_DATA.read_text(encoding="utf-8"), encoding="utf-8")
    seed_run(seed_python, "from orchestrator.train.tiny import build_tiny_model; "
                          f"build_tiny_model({str(folder / 'base')!r}); from tests.remote_model import "
                          f"build_remote_model; build_remote_model({str(folder / 'glm')!r})")
    (folder / ".gitignore").write_text("base/\nglm/\ndata/\nmerged/\n")
    tiny, chatml = "model: base", "template: chatml, max_length: 128, packing: true"
    # the full run trains the ChatGLM3-like model that ships its own code (and its SentencePiece tokenizer); no
    # packing: like ChatGLM3's, its code takes only a 2-D padding mask
    glm, chatglm3 = "model: glm\ntrust_remote_code: true", "template: chatglm3, max_length: 96"
    configs = {"full": ("full", 2, glm, chatglm3, ""), "lora": ("lora", 2, tiny, chatml, ""),
               "lora_more": ("lora", 3, tiny, chatml, "resume_from_checkpoint: latest\n"),
               "qlora": ("qlora", 2, tiny, chatml, ""),
               "prefix": ("prefix", 1, tiny, "max_length: 128", "prompt: {num_virtual_tokens: 4}\n")}
    for name, (mode, steps, model, data, extra) in configs.items():
        (folder / f"{name}.yaml").write_text(CONFIG.format(model=model, mode=mode, data=data, out=mode, steps=steps,
                                                           extra=extra))
    return folder


def inventory(cluster, tmp_path: Path, python: Path, node_python: dict[str, Path] | None = None) -> Path:
    """The test cluster's inventory with every node's python = `python` (and per-node overrides)."""
    lines = []
    for line in cluster.inventory.read_text().splitlines():
        if line.startswith("python = "):
            line = f'python = "{python}"'
        lines.append(line)
        for node in cluster.nodes:
            if line == f'name = "{node.name}"' and node.name in (node_python or {}):
                lines.append(f'python = "{node_python[node.name]}"')
    path = tmp_path / "cluster.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def launched_ok(proc: subprocess.CompletedProcess, env: dict) -> dict:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    status = job_json(job_id_of(proc), env=env)
    assert status["state"] == "SUCCEEDED", status
    return status


def started(cluster) -> set[str]:
    """Job folders on any node holding a launch script (a refused launch may leave a code snapshot, never that)."""
    return {str(p.parent) for n in cluster.nodes for p in cluster.node_path(n.name, "jobs").glob("*/launch.sh")}


def test_worker_code_imports_nothing_else_from_orch():
    from orchestrator.jobs.worker import code_files

    shipped = {name for name in code_files()}
    assert "worker/orchestrator/train/__main__.py" in shipped
    for name, (data, _) in code_files().items():
        if not name.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(data)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for module in modules:
                if module == "orchestrator" or module.startswith("orchestrator."):
                    target = "worker/" + module.replace(".", "/")
                    assert f"{target}.py" in shipped or f"{target}/__init__.py" in shipped, (name, module)


PACKED_VS_ALONE = """
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from orchestrator.train.data.collate import make_collator
model = AutoModelForCausalLM.from_pretrained({base!r}).eval()
tok = AutoTokenizer.from_pretrained({base!r})
a, b = tok("The quick brown fox")["input_ids"], tok("你好！我是一个助手")["input_ids"]
row = {{"input_ids": a + b, "labels": a + b, "position_ids": list(range(len(a))) + list(range(len(b)))}}
batch = make_collator(tok, packing=True)([row])
with torch.no_grad():
    packed = model(**{{k: v for k, v in batch.items() if k != "labels"}}).logits[0]
    alone = model(input_ids=torch.tensor([b])).logits[0]
print(float((packed[len(a):] - alone).abs().max()))
"""


@pytest.fixture(scope="module")
def seed_runs(seed_python, seed_project) -> dict[str, Future]:
    """The packing check and the P-Tuning v2 run in the seed env, side by side (each is mostly one process importing
    torch and transformers; this machine has 2 cores): name -> its stdout, once done."""
    pool = ThreadPoolExecutor(max_workers=2)
    runs = {"packed": pool.submit(seed_run, seed_python, PACKED_VS_ALONE.format(base=str(seed_project / "base"))),
            "prefix": pool.submit(seed_run, seed_python,
                                  f"import os, sys; os.chdir({str(seed_project)!r}); "
                                  "from orchestrator.train.__main__ import main; sys.exit(main(['prefix.yaml']))")}
    yield runs
    pool.shutdown(wait=True)


@pytest.mark.slow
def test_packed_rows_do_not_attend_across_samples_on_transformers_4_44(seed_runs):
    out = seed_runs["packed"].result()
    assert float(out.strip()) < 1e-4, out


@pytest.mark.slow
def test_p_tuning_v2_trains_on_peft_0_12(seed_runs, seed_project):
    """peft before 0.13 hands prefix keys/values over as a tuple, which transformers 4.44's Llama refuses while
    training: compat.prefix_as_cache wraps them."""
    seed_runs["prefix"].result()
    adapter = json.loads((seed_project / "out" / "prefix" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "PREFIX_TUNING" and adapter["num_virtual_tokens"] == 4


@pytest.mark.cluster
@pytest.mark.slow
def test_seed_env_full_lora_resume_and_merge_through_orch_launch(seed_python, seed_project, env, cluster, tmp_path):
    env = {**env, "ORCH_CLUSTER": str(inventory(cluster, tmp_path, seed_python))}
    # full fine-tuning on node2, side by side with the LoRA launches on node0 and node1 (2 cores here; much of a
    # launch is waiting on one process's imports)
    with ThreadPoolExecutor(max_workers=1) as pool:
        full_launch = pool.submit(orch, "launch", "--nodes", "node2", "--nproc-per-node", "1", "full.yaml",
                                  cwd=seed_project, env=env, timeout=600)
        # LoRA on two nodes (gloo), then a second launch that resumes from its checkpoint
        lora = orch("launch", "--nodes", "node0,node1", "--nproc-per-node", "1", "lora.yaml", cwd=seed_project, env=env,
                    timeout=600)
        job = launched_ok(lora, env)["id"]
        shipped = cluster.node_path("node0", "jobs", job, "worker", "orchestrator")
        assert f"worker: {cluster.workdir}/jobs/{job}/worker/orchestrator on torch 2.13.0" in lora.stdout
        assert "transformers 4.44.0" in lora.stdout and "peft 0.12.0" in lora.stdout and (shipped / "train").is_dir()
        assert "world size: 2" in lora.stdout
        more = orch("launch", "--nodes", "node0,node1", "--nproc-per-node", "1", "lora_more.yaml", cwd=seed_project,
                    env=env, timeout=600)
        launched_ok(more, env)
        assert "resuming from" in more.stdout and "checkpoint-2" in more.stdout
        out = cluster.node_path("node0", "outputs", "fm9g", "out", "lora")
        state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
        assert state["global_step"] == 3 and (out / "adapter_model.safetensors").is_file()
        # full fine-tuning on one node
        launched_ok(full_launch.result(), env)
    saved = cluster.node_path("node2", "outputs", "fm9g", "out", "full")
    assert {"model.safetensors", "modeling_tinyglm.py", "tokenization_tinyglm.py"} <= {p.name for p in saved.iterdir()}
    # merge the LoRA result with the 4.44 stack and the worker code the job shipped; base + adapter == merged
    merged = tmp_path / "merged"
    result = seed_run(seed_python, f"""
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM
from orchestrator.train.merge import merge_adapter
merge_adapter({str(out)!r}, {str(merged)!r}, base={str(seed_project / 'base')!r})
ids = torch.tensor([[5, 17, 42, 99, 7]])
with torch.no_grad():
    m = AutoModelForCausalLM.from_pretrained({str(merged)!r}).eval()(ids).logits
    b = AutoModelForCausalLM.from_pretrained({str(seed_project / 'base')!r})
    p = PeftModel.from_pretrained(b, {str(out)!r}).eval()(ids).logits
    plain = AutoModelForCausalLM.from_pretrained({str(seed_project / 'base')!r}).eval()(ids).logits
print(float((m - p).abs().max()), float((m - plain).abs().max()))
""", pythonpath=shipped.parent)
    merged_vs_adapter, merged_vs_base = map(float, result.split())
    assert merged_vs_adapter < 1e-4 and merged_vs_base > 1e-6, result


@pytest.mark.cluster
@pytest.mark.slow
def test_preflight_refuses_unsupported_node_envs_one_line_each(seed_python, seed_project, env, cluster, tmp_path):
    old = env_python(OLD_ENV, "the transformers 4.30 env")
    env = {**env, "ORCH_CLUSTER": str(inventory(cluster, tmp_path, seed_python, {"node1": old}))}
    before = started(cluster)
    refused = orch("launch", "--nodes", "node0,node1", "lora.yaml", cwd=seed_project, env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    problems = [line.strip() for line in refused.stderr.splitlines() if line.startswith("  ")]
    assert problems == ["node1: transformers 4.30.0 is not supported (the worker supports transformers >=4.40,<6)"]
    # QLoRA with transformers 4.44 needs CUDA (its bitsandbytes integration refuses CPU): said before anything runs
    qlora = orch("launch", "--nodes", "node0", "qlora.yaml", cwd=seed_project, env=env)
    assert qlora.returncode == 2 and "Traceback" not in qlora.stderr, qlora.stderr
    assert "node0: finetuning: qlora needs a CUDA GPU with transformers 4.44.0" in qlora.stderr
    assert started(cluster) == before  # nothing started
