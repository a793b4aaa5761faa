"""Generation-based evaluation (ChatGLM3's predict_with_generate): prompts come from the eval/test rows, scores join
the eval log entry and TensorBoard, and the test set's predictions land next to the checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.train import metrics
from orchestrator.train.generation_eval import Prompt, prompts_of, stop_ids, trained_runs

ROOT = Path(__file__).resolve().parent.parent
M = -100
TEST_SET = [  # 3 samples, 4 assistant turns: one prediction per turn
    {"conversations": [{"role": "user", "content": "三加五等于几？"}, {"role": "assistant", "content": "三加五等于八。"}]},
    {"conversations": [{"role": "user", "content": "What is the capital of France?"},
                       {"role": "assistant", "content": "The capital of France is Paris."}]},
    {"conversations": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！"},
                       {"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Red."}]},
]


def test_every_trained_run_gives_one_prompt_with_what_came_before_it():
    rows = [{"input_ids": [1, 2, 3, 4, 5, 6, 7, 8], "labels": [M, M, 3, 4, M, M, 7, 8]},
            {"input_ids": [9, 10], "labels": [9, 10]}]  # plain text: nothing to prompt with
    assert trained_runs(rows[0]["labels"]) == [(2, 4), (6, 8)]
    assert prompts_of(rows) == [Prompt([1, 2], [3, 4]), Prompt([1, 2, 3, 4, 5, 6], [7, 8])]
    assert prompts_of(rows, limit=1) == [Prompt([1, 2], [3, 4])]


def test_generation_stops_at_eos_and_the_templates_end_of_turn(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    im_end, im_start = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|im_start|>")
    prompts = [Prompt([im_start, 5], [7, 8, im_end]), Prompt([im_start, 6], [9, im_start])]
    assert stop_ids(tok, prompts) == sorted({tok.eos_token_id, im_end, im_start})


def test_chatglm3_lora_yaml_generates_at_eval_and_on_the_test_file(tiny_model, tmp_path):
    """lora.yaml as in ChatGLM3's finetune guide, trained by 2 processes (torchrun, gloo): eval at step 2 logs
    eval_rouge-1/2/l and eval_bleu-4 (console, TensorBoard and the job folder's metrics.jsonl), then the test file
    is generated on. Every rank writes its step timing there; the slow-rank failpoint shows in rank 1's compute."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = [json.loads(line) for line in (ROOT / "orchestrator" / "sample_data" / "chat_zh_en.jsonl").open()]
    data = tmp_path / "AdvertiseGen"
    data.mkdir()
    train = [{"conversations": r["messages"]} for r in rows if "messages" in r][:16]
    (data / "train.json").write_text(json.dumps(train, ensure_ascii=False))
    (data / "dev.json").write_text(json.dumps(TEST_SET, ensure_ascii=False))
    out = tmp_path / "output"
    job_dir = tmp_path / "job"  # as a launched job's folder
    job_dir.mkdir()
    config = tmp_path / "lora.yaml"
    config.write_text(
        "data_config: {train_file: train.json, val_file: dev.json, test_file: dev.json, num_proc: 1}\n"
        "max_input_length: 96\nmax_output_length: 32\n"
        f"training_args: {{output_dir: {out}, max_steps: 2, per_device_train_batch_size: 2,"
        " per_device_eval_batch_size: 2, learning_rate: 5.0e-4, evaluation_strategy: steps, eval_steps: 2,"
        " save_strategy: 'no', report_to: tensorboard, predict_with_generate: true,"
        " generation_config: {max_new_tokens: 6}}\n"
        "peft_config: {peft_type: LORA, task_type: CAUSAL_LM, r: 4, lora_alpha: 16, lora_dropout: 0.1,"
        " target_modules: [q_proj, v_proj]}\n")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m",
                           "orchestrator.train", str(config), "--model", str(tiny_model), "--data-dir", str(data)],
                          check=False, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "ORCH_JOB_DIR": str(job_dir),
                               "ORCH_FAILPOINT": "slow-rank:1:0.3"})
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    feed = [json.loads(line) for line in (job_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [line for line in feed if "eval_loss" in line]
    assert len(evals) == 1 and evals[0]["step"] == 2 and all(f"eval_{m}" in evals[0] for m in metrics.METRICS)
    assert any("train_loss" in line for line in feed) and any("test_rouge-1" in line for line in feed)
    timing = {r: json.loads((job_dir / "timing" / f"rank-{r}.json").read_text()) for r in (0, 1)}
    assert timing[0]["step"] == timing[1]["step"] == 2 and timing[1]["forward_s"] >= 0.3 > timing[0]["forward_s"]
    # data wait is the dataloader's own time: rank 1 does not count its wait for rank 0's logging and eval
    assert all(0 <= timing[r]["data_wait_s"] < 0.1 for r in (0, 1)), timing
    assert log.count("warning: data_config.num_proc: ignored") == 1  # rank 0 only
    eval_lines = [line for line in log.splitlines() if "'eval_loss'" in line]
    assert len(eval_lines) == 1 and all(f"'eval_{m}'" in eval_lines[0] for m in metrics.METRICS), eval_lines
    events = EventAccumulator(str(next((out / "runs").iterdir()))).Reload()
    scalars = events.Tags()["scalars"]
    assert {f"eval/{m}" for m in metrics.METRICS} <= set(scalars) and "eval/loss" in scalars
    assert events.Scalars("eval/rouge-1")[0].step == 2
    predictions = [json.loads(line) for line in (out / "predictions_test.jsonl").read_text().splitlines()]
    assert [p["reference"] for p in predictions] == ["三加五等于八。", "The capital of France is Paris.", "你好！", "Red."]
    assert predictions[3]["prompt"].endswith("Name a colour.<|im_end|>\n<|im_start|>assistant\n")
    expected = metrics.average([metrics.score(p["prediction"], p["reference"]) for p in predictions])
    logged = json.loads((out / "test_results.json").read_text())
    assert logged == pytest.approx({f"test_{m}": v for m, v in expected.items()})
