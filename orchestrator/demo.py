"""`orch demo`: the whole loop on this machine in about two minutes, through the same commands a user types.

1. build a tiny Llama and a tokenizer trained locally on the sample data (nothing from a hub);
2. write the sample chat data and a LoRA config into a demo project folder;
3. `orch launch --nproc-per-node 2 demo.yaml`: the controller runs the training worker under torchrun on the
   embedded localhost node (or the nodes of --cluster), following rank 0's log;
4. `orch status JOB` and `orch logs JOB`;
5. `orch merge` the adapter into the base;
6. `orch chat` the merged model one prompt.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

from orchestrator.errors import OrchError

SAMPLE_DATA = Path(__file__).resolve().parent / "sample_data" / "chat_zh_en.jsonl"
PROMPT = "What is the capital of France?"

CONFIG = """\
# orch demo: LoRA on a tiny Llama, 2 processes (gloo on CPU)
model: {model}
stage: sft
finetuning: lora
data:
  train: [data/train.jsonl]
  template: chatml
  max_length: 256
  packing: true
# the base is random: adapters alone cannot learn its vocabulary, so the embeddings and the output layer train
# too (saved whole in the adapter folder; `orch merge` folds them in)
lora: {{r: 16, alpha: 32, dropout: 0.0, target_modules: all-linear, modules_to_save: [embed_tokens, lm_head]}}
training_args:
  output_dir: out/lora          # relative: lands in the node's outputs folder for this project
  num_train_epochs: {epochs}
  per_device_train_batch_size: 4
  gradient_accumulation_steps: 1
  learning_rate: 5.0e-3
  lr_scheduler_type: cosine
  warmup_ratio: 0.05
  logging_steps: 40
  save_steps: 200
  save_total_limit: 2
  report_to: tensorboard
  seed: 42
"""


def orch_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", *args]


def build_project(workspace: Path, epochs: int) -> Path:
    """The demo project folder: base model, data, config."""
    from orchestrator.train.tiny import build_tiny_model

    if workspace.exists():
        shutil.rmtree(workspace)
    (workspace / "data").mkdir(parents=True)
    shutil.copy(SAMPLE_DATA, workspace / "data" / "train.jsonl")
    texts = []
    for line in SAMPLE_DATA.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        texts.extend(turn.get("content", "") for turn in record.get("messages", record.get("conversations", [])))
    model = build_tiny_model(workspace / "base", hidden_size=128, num_layers=2, extra_text=texts)
    (workspace / ".orchignore").write_text("base/\nmerged/\n")
    (workspace / "demo.yaml").write_text(CONFIG.format(model=model.resolve(), epochs=epochs))
    return workspace / "demo.yaml"


def run_demo(workspace: Path, cluster: str | None, nproc: int, epochs: int, say: Callable[[str], None]) -> str:
    """Run every step; return the job id. Raises OrchError naming the step that failed."""
    say(f"== 1. tiny model + sample data in {workspace}")
    build_project(workspace, epochs)
    cluster_args = ["--cluster", cluster] if cluster else []
    say(f"== 2. orch launch --nproc-per-node {nproc} demo.yaml")
    job_id = _launch(workspace, cluster_args, nproc, say)
    say(f"== 3. orch status {job_id}")
    _run(orch_command("status", job_id), workspace, say, "status")
    say(f"== 4. orch logs {job_id} (last lines)")
    logs = _run(orch_command("logs", job_id), workspace, None, "logs")
    for line in logs.splitlines()[-5:]:
        say(line)
    adapter = _adapter_dir(job_id)
    merged = workspace / "merged"
    say(f"== 5. orch merge --adapter {adapter} --output {merged}")
    _run(orch_command("merge", "--adapter", str(adapter), "--output", str(merged)), workspace, say, "merge")
    say(f"== 6. echo {PROMPT!r} | orch chat {merged}")
    _run(orch_command("chat", str(merged), "--max-new-tokens", "40"), workspace, say, "chat", stdin=PROMPT + "\n")
    say(f"done. Try: orch chat {merged}   or   orch serve {merged}   (TensorBoard: orch tb {job_id})")
    return job_id


def _launch(workspace: Path, cluster_args: list[str], nproc: int, say: Callable[[str], None]) -> str:
    """`orch launch` attached, echoing its output; the job id is its first line."""
    proc = subprocess.Popen(orch_command("launch", *cluster_args, "--nproc-per-node", str(nproc), "demo.yaml"),
                            cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    job_id = None
    for line in proc.stdout:
        line = line.rstrip("\n")
        if job_id is None and line and not line.startswith(("job ", "orch")) and " " not in line:
            job_id = line
        say(line)
    if proc.wait() != 0 or job_id is None:
        raise OrchError(f"demo: training job {job_id or ''} did not succeed (see `orch status {job_id or ''}`)")
    return job_id


def _adapter_dir(job_id: str) -> Path:
    """The adapter the job saved: `out/lora` under the master's outputs folder (this machine for localhost)."""
    from orchestrator.jobs.store import Store
    from orchestrator.jobs.tensorboard import output_root

    job = Store().get(job_id)
    if not job.nodes[0].node.is_local:
        raise OrchError("demo: merging needs the adapter on this machine; run the demo on localhost")
    return Path(output_root(job)) / "out" / "lora"


def _run(argv: list[str], cwd: Path, say: Callable[[str], None] | None, step: str, stdin: str | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, input=stdin, capture_output=True, text=True)
    if say is not None:
        for line in proc.stdout.splitlines():
            say(line)
    if proc.returncode != 0:
        raise OrchError(f"demo step {step} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else ''}")
    return proc.stdout
