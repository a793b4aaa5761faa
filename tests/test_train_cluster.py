"""`orch launch --nodes node0,node1 job.yaml` on the namespace test cluster: the built-in worker trains LoRA across
two nodes (gloo), checkpoints and TensorBoard events land on the master, and the loss matches a one-process run
with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.orch_cli import demo_project, job_id_of, job_json, orch

CONFIG = """\
model: base
stage: sft
finetuning: lora
data: {{train: [data/train.jsonl], template: chatml, max_length: 128, packing: true}}
lora: {{r: 8, alpha: 16, dropout: 0.0, target_modules: all-linear}}
training_args: {{output_dir: out/lora, max_steps: 20, per_device_train_batch_size: {batch}, learning_rate: 1.0e-2,
                 lr_scheduler_type: constant, logging_steps: 5, save_steps: 10, save_total_limit: 3,
                 report_to: tensorboard, seed: 7, dataloader_num_workers: 0}}
"""


@pytest.fixture(scope="module")
def train_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = demo_project(tmp_path_factory.mktemp("cluster-train") / "llm")
    # the base model and the data are git-ignored, as they usually are: they travel because the config names them
    (folder / ".orchignore").write_text("out/\n")
    (folder / ".gitignore").write_text("base/\ndata/\nmerged/\n")
    (folder / "two_nodes.yaml").write_text(CONFIG.format(batch=2))
    (folder / "one_process.yaml").write_text(CONFIG.format(batch=4))
    return folder


def losses(trainer_state: Path) -> list[float]:
    return [e["loss"] for e in json.loads(trainer_state.read_text())["log_history"] if "loss" in e]


def test_two_node_lora_run_matches_one_process(train_project, env, cluster, tmp_path):
    # the one-process reference trains on this machine side by side with the launch
    reference_log = tmp_path / "reference.log"
    with reference_log.open("w") as log:
        reference = subprocess.Popen([sys.executable, "-m", "orchestrator.train", "one_process.yaml"],
                                     cwd=train_project, env={**os.environ, "ORCH_OUTPUT_ROOT": str(tmp_path)},
                                     stdout=log, stderr=subprocess.STDOUT)
    launched = orch("launch", "--nodes", "node0,node1", "--nproc-per-node", "1", "two_nodes.yaml",
                    cwd=train_project, env=env, timeout=600)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-2000:]
    job_id = job_id_of(launched)
    status = job_json(job_id, env=env)
    assert status["state"] == "SUCCEEDED" and [n["exit_code"] for n in status["nodes"]] == [0, 0]
    assert "world size: 2; effective global batch: 4" in launched.stdout
    # progress, as rank 0 last wrote it into its job folder: in `orch status --json` and the table
    progress = status["progress"]
    assert progress["step"] == progress["total"] == 20 and progress["eta_s"] == 0, progress
    assert progress["loss"] > 0 and progress["tokens_per_s"] > 0 and progress["epoch"] > 0, progress
    # the metric feed, brought home by the probes: every logged step, and both ranks' step timing
    run_dir = Path(status["run_dir"])
    feed = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in feed if "loss" in line] == [5, 10, 15, 20], feed
    assert all(line["learning_rate"] > 0 and line["grad_norm"] > 0 for line in feed if "loss" in line), feed
    timing = json.loads((run_dir / "timing.json").read_text())["ranks"]
    assert {t["node"] for t in timing.values()} == {"node0", "node1"} and all(
        t["compute_s"] > 0 for t in timing.values()), timing
    shown = orch("status", job_id, env=env, check=True).stdout
    assert "progress: step 20/20 (100%), epoch" in shown and "tokens/s, ETA 0:00:00" in shown, shown
    out = cluster.node_path("node0", "outputs", "llm", "out", "lora")
    assert (out / "adapter_model.safetensors").exists()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-20"]
    assert list(out.glob("runs/**/events.out.tfevents*")), "no TensorBoard events on the master"
    # without a shared filesystem every node keeps whole checkpoints (save_on_each_node), so any rank can resume
    worker_copy = cluster.node_path("node1", "outputs", "llm", "out", "lora", "checkpoint-10")
    assert (worker_copy / "adapter_model.safetensors").exists() and (worker_copy / "orch_complete.json").exists()
    # `orch tb` brings the master's event files to the controller
    tb = orch("tb", job_id, env=env, check=True)
    assert "event file(s)" in tb.stdout and "tensorboard --logdir" in tb.stdout

    assert reference.wait(timeout=600) == 0, reference_log.read_text()[-3000:]
    two = losses(out / "checkpoint-20" / "trainer_state.json")
    one = losses(tmp_path / "out" / "lora" / "checkpoint-20" / "trainer_state.json")
    assert len(two) == len(one) == 4
    for a, b in zip(two, one):
        assert abs(a - b) <= 0.03 * b, (two, one)


def test_node_killed_during_checkpoint_save_restarts_every_rank_from_the_same_complete_one(train_project, env,
                                                                                         cluster):
    (train_project / "crash.yaml").write_text(
        CONFIG.format(batch=2).replace("out/lora", "out/crash").replace("max_steps: 20", "max_steps: 30"))
    # only node3 dies in the middle of saving checkpoint-20; node2 finishes that save and marks its copy complete
    launched = orch("launch", "--nodes", "node2,node3", "--nproc-per-node", "1", "--max-restarts", "1",
                    "--env", "ORCH_FAILPOINT=checkpoint-save:20:node3", "crash.yaml", cwd=train_project, env=env,
                    timeout=600)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-2000:]
    first = job_json(job_id_of(launched), env=env)
    assert first["state"] == "FAILED" and "node node3" in first["root_cause"], first
    assert "SIGKILL" in first["root_cause"], first
    second = job_json(first["restarted_as"], env=env)
    assert second["state"] == "SUCCEEDED" and second["attempt"] == 1
    # each node's own log: both resumed from checkpoint-10, node2 passing over its own complete checkpoint-20
    logs = {node: orch("logs", second["id"], "--node", node, env=env, check=True).stdout for node in ("node2", "node3")}
    for node, log in logs.items():
        assert "resuming from" in log and log.split("resuming from", 1)[1].split()[0].endswith("/checkpoint-10"), (
            node, log[-3000:])
    assert "skipped checkpoint(s) checkpoint-20 (complete here, not on every node)" in logs["node2"]
    assert "skipped incomplete checkpoint(s) checkpoint-20" in logs["node3"]
    for node in ("node2", "node3"):
        state = cluster.node_path(node, "outputs", "llm", "out", "crash", "checkpoint-30", "trainer_state.json")
        assert json.loads(state.read_text())["global_step"] == 30, node


def test_a_config_error_only_the_worker_finds_is_the_root_cause(train_project, env, cluster):
    (train_project / "typo.yaml").write_text(CONFIG.format(batch=2).replace("seed: 7", "seed: 7, lerning_rate: 1"))
    launched = orch("launch", "--nodes", "node2,node3", "--nproc-per-node", "1", "typo.yaml", cwd=train_project,
                    env=env, timeout=600)
    assert launched.returncode == 1, launched.stdout[-3000:] + launched.stderr[-2000:]
    status = job_json(job_id_of(launched), env=env)
    assert status["state"] == "FAILED" and 2 in [n["exit_code"] for n in status["nodes"]], status
    cause = status["root_cause"].splitlines()
    assert "exited with exit code 2" in cause[0] and len(cause) == 2, cause
    assert cause[1].strip().startswith("orch train: error: typo.yaml") and "lerning_rate" in cause[1], cause
