"""Resume on a different world size through `orch train` (real torchrun, gloo, DeepSpeed on CPU): a ZeRO-2 LoRA run
saved on 2 processes resumes on 1, a ZeRO-3 full fine-tune saved on 1 resumes on 2. Each resumed run starts from
exactly the weights and Adam moments the first one saved (gathered, compared tensor for tensor), keeps the global
batch by changing gradient accumulation (one line), and continues the uninterrupted run's loss curve, LR schedule
and token count step for step (the same samples in the same steps: none seen twice, none skipped)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.orch_cli import assert_refused, demo_project

CONFIG = """\
model: base
stage: sft
finetuning: {mode}
data: {{train: [data/train.jsonl], template: chatml, max_length: 128, packing: true}}
lora: {{r: 8, alpha: 16, dropout: 0.0, target_modules: all-linear}}
deepspeed: {preset}
resume_from_checkpoint: latest
training_args: {{output_dir: {out}, max_steps: {steps}, per_device_train_batch_size: {batch},
                 gradient_accumulation_steps: {accumulation}, learning_rate: 1.0e-2, lr_scheduler_type: {schedule},
                 logging_steps: 1, save_steps: 4, report_to: none, seed: 7, dataloader_num_workers: 0}}
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_project(tmp_path_factory.mktemp("reshape") / "llm")


def train(workspace: Path, name: str, nproc: int, dump: str, lines: dict[str, str] | None = None,
          **fields) -> subprocess.CompletedProcess:
    """`orch train` of CONFIG with `fields`, top-level `lines` replaced or added (e.g. `stage: dpo`)."""
    values = {"mode": "lora", "preset": "zero2", "out": f"out/{name}", "batch": 2, "accumulation": 1, "steps": 8,
              "schedule": "linear", **fields}
    text = CONFIG.format(**values)
    for key, value in (lines or {}).items():
        line = f"{key}: {value}"
        text, found = re.subn(rf"^{key}:.*$", lambda _: line, text, flags=re.M)
        text += "" if found else line + "\n"
    (workspace / f"{name}.yaml").write_text(text)
    return subprocess.run([sys.executable, "-m", "orchestrator", "train", f"{name}.yaml", "--nproc-per-node",
                           str(nproc)], cwd=workspace, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "ORCH_DUMP_STATE": str(workspace / "dumps" / dump)})


def history(out: Path) -> list[dict]:
    state = json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())
    return [e for e in state["log_history"] if "loss" in e]


def assert_resumed_as_saved(workspace: Path, first: str, then: str, step: int = 4) -> None:
    """The resumed run's gathered weights and moments equal, bit for bit, what the first run saved at `step`."""
    import torch

    saved = torch.load(workspace / "dumps" / first / f"saved-{step}.pt")
    resumed = torch.load(workspace / "dumps" / then / f"resumed-{step}.pt")
    assert saved and set(saved) == set(resumed), set(saved) ^ set(resumed)
    for name, tensors in saved.items():
        assert tensors["exp_avg_sq"] is not None and float(tensors["exp_avg_sq"].abs().sum()) > 0, name
        for key, tensor in tensors.items():
            assert torch.equal(tensor, resumed[name][key]), (name, key)


def assert_continues(reference: list[dict], resumed: list[dict], same: tuple[str, ...] = (
        "learning_rate", "num_input_tokens_seen"), close: tuple[str, ...] = ("loss",)) -> None:
    """Steps 5-8 of the resumed run: the uninterrupted run's learning rate and token count, and its loss (DPO,
    which counts no tokens: its log-probabilities of the chosen and rejected answers, which are the samples')."""
    assert [e["step"] for e in resumed] == [e["step"] for e in reference] == list(range(1, 9))
    for ref, got in zip(reference[4:], resumed[4:]):
        assert all(got[key] == ref[key] for key in same), (ref, got)
        assert all(abs(got[key] - ref[key]) <= 1e-3 * abs(ref[key]) for key in close), (ref, got)


def resume_copy(workspace: Path, source: str, target: str) -> None:
    """A new output folder holding only the first run's checkpoint-4 (the run "lost its node" after it)."""
    shutil.copytree(workspace / "out" / source / "checkpoint-4", workspace / "out" / target / "checkpoint-4")


def test_zero2_lora_saved_on_two_processes_resumes_on_one(workspace):
    reference = train(workspace, "z2", 2, "z2")
    assert reference.returncode == 0, reference.stdout[-2000:] + reference.stderr[-3000:]
    marker = json.loads((workspace / "out" / "z2" / "checkpoint-4" / "orch_complete.json").read_text())
    assert (marker["world_size"], marker["per_device_train_batch_size"], marker["gradient_accumulation_steps"]) == (
        2, 2, 1)
    resume_copy(workspace, "z2", "z2-on-1")
    resumed = train(workspace, "z2-on-1", 1, "z2-on-1")
    said = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, said[-5000:]
    assert said.count("resume: world size 2 -> 1: gradient accumulation 1 -> 2 keeps the global batch at 4") == 1
    assert "resume: converted checkpoint-4" in said and "to DeepSpeed's universal checkpoint" in said, said[-3000:]
    assert "effective global batch: 4 (2 per device x 2 accumulation x 1 processes)" in said
    cached = workspace / "out" / "z2-on-1" / "checkpoint-4"
    assert (cached / "latest_universal").read_text() == "global_step4_universal"
    assert (cached / "global_step4_universal" / "orch_universal.json").is_file()
    assert_resumed_as_saved(workspace, "z2", "z2-on-1")
    assert_continues(history(workspace / "out" / "z2"), history(workspace / "out" / "z2-on-1"))
    # a global batch no whole accumulation keeps (4 on one process of 3): one line, exit 2, before any training
    refused = train(workspace, "z2", 1, "refused", batch=3)
    assert_refused(refused, "resume: the global batch 4 (2 per device x 1 accumulation x 2 processes) cannot be kept"
                   " on 1 processes of 3")


def test_zero3_full_saved_on_one_process_resumes_on_two(workspace):
    reference = train(workspace, "z3", 1, "z3", mode="full", preset="zero3", accumulation=2)
    assert reference.returncode == 0, reference.stdout[-2000:] + reference.stderr[-3000:]
    resume_copy(workspace, "z3", "z3-on-2")
    resumed = train(workspace, "z3-on-2", 2, "z3-on-2", mode="full", preset="zero3", accumulation=2)
    said = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, said[-5000:]
    assert said.count("resume: world size 1 -> 2: gradient accumulation 2 -> 1 keeps the global batch at 4") == 1
    assert "to DeepSpeed's universal checkpoint" in said, said[-3000:]
    assert_resumed_as_saved(workspace, "z3", "z3-on-2")
    assert_continues(history(workspace / "out" / "z3"), history(workspace / "out" / "z3-on-2"))


PAIRS = "{train: [data/prefs.jsonl], template: chatml, max_length: 128, packing: false}"


@pytest.mark.parametrize("name, saved_on, resumed_on, fields, lines", [pytest.param(*case, id=case[0]) for case in [
    ("qlora-zero3", 2, 1, {"mode": "qlora", "preset": "zero3"}, {}),
    ("freeze-zero2", 1, 2, {"mode": "freeze", "preset": "zero2", "accumulation": 2}, {}),
    ("dpo-lora-zero3_offload", 2, 1, {"preset": "zero3_offload"}, {"stage": "dpo", "data": PAIRS}),
    ("ptuning_v2-ddp", 1, 2, {"mode": "prefix", "preset": "null", "accumulation": 2},
     {"data": PAIRS.replace("prefs", "train"), "prompt": "{num_virtual_tokens: 4}"}),
]])
def test_each_method_and_backend_resumes_on_another_world_size(workspace, name, saved_on, resumed_on, fields, lines):
    """A covering set of method x backend x direction (with the two tests above): the resumed run starts from the
    gathered weights and moments saved, says the new accumulation in one line and continues the reference run."""
    pairs = [{"prompt": f"Question {i}: what is {i} plus {i}?", "chosen": f"It is {2 * i}.", "rejected": "我不知道。"}
             for i in range(40)]
    (workspace / "data" / "prefs.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
    reference = train(workspace, name, saved_on, name, lines, **fields)
    assert reference.returncode == 0, reference.stdout[-2000:] + reference.stderr[-3000:]
    resume_copy(workspace, name, f"{name}-on-{resumed_on}")
    resumed = train(workspace, f"{name}-on-{resumed_on}", resumed_on, f"{name}-on-{resumed_on}", lines, **fields)
    said = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, said[-5000:]
    before, after = fields.get("accumulation", 1), fields.get("accumulation", 1) * saved_on // resumed_on
    assert said.count(f"resume: world size {saved_on} -> {resumed_on}: gradient accumulation {before} -> {after} "
                      "keeps the global batch at 4") == 1, said[-3000:]
    assert ("to DeepSpeed's universal checkpoint" in said) == (fields["preset"] != "null"), said[-3000:]
    assert_resumed_as_saved(workspace, name, f"{name}-on-{resumed_on}")
    dpo = lines.get("stage") == "dpo"
    assert_continues(history(workspace / "out" / name), history(workspace / "out" / f"{name}-on-{resumed_on}"),
                     *((("learning_rate",), ("loss", "logps/chosen", "logps/rejected")) if dpo else ()))


@pytest.mark.parametrize("saved, world, batch, accumulation", [
    ({"world_size": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1}, 1, 2, 2),
    ({"world_size": 4, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 3}, 3, 2, 4),
    ({"world_size": 1, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2}, 2, 2, 2),
    ({"world_size": 2}, 1, 2, 1),  # a marker from before layouts were recorded: the configured accumulation
])
def test_accumulation_keeps_the_global_batch(saved, world, batch, accumulation):
    from orchestrator.train.reshape import accumulation_for

    assert accumulation_for(saved, world, batch, 1) == accumulation


def test_a_global_batch_no_accumulation_keeps_is_refused_in_one_line():
    from orchestrator.errors import ConfigError
    from orchestrator.train.reshape import accumulation_for

    with pytest.raises(ConfigError) as refused:
        accumulation_for({"world_size": 4, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1}, 3, 2, 1)
    assert "\n" not in str(refused.value) and "global batch 8" in str(refused.value) and "3 processes" in str(
        refused.value)


def test_without_a_shared_filesystem_latest_falls_back_to_a_checkpoint_whole_on_every_node():
    """Two nodes saved ZeRO checkpoints 4 and 8 (one partition each, on its own disk); checkpoint 4 was also
    copied whole to node1. On one node (node1 alone), 8 lacks rank 1's partition: 4 is chosen, 8 named."""
    from orchestrator.train.checkpoints import whole

    node1 = {4: {"world_size": 2, "partitions": [0, 1]}, 8: {"world_size": 2, "partitions": [0]}}
    assert whole([node1], 1) == ({4}, {8: "1"})
    assert whole([node1, {8: {"world_size": 2, "partitions": [1]}}], 2) == ({8}, {})  # same world: own partition
    assert whole([{8: {"world_size": 2, "partitions": []}}], 1) == ({8}, {})  # plain DDP: whole on every node


def test_latest_says_in_one_line_which_checkpoint_it_falls_back_to_and_why(tmp_path):
    from orchestrator.train.checkpoints import mark_complete, resolve_resume

    for step, ranks in ((4, (0, 1)), (8, (0,))):  # node2 held rank 1's partition of checkpoint-8
        folder = tmp_path / f"checkpoint-{step}"
        (folder / f"global_step{step}").mkdir(parents=True)
        (folder / "latest").write_text(f"global_step{step}")
        (folder / "trainer_state.json").write_text("{}")
        for rank in ranks:
            (folder / f"global_step{step}" / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").write_bytes(b"")
        mark_complete(folder, step, {"world_size": 2, "per_device_train_batch_size": 2,
                                     "gradient_accumulation_steps": 1})
    said: list[str] = []
    assert resolve_resume("latest", tmp_path, log=said.append) == str(tmp_path / "checkpoint-4")
    assert said == ["resume: checkpoint-8 lacks the ZeRO partition(s) of rank(s) 1 on a node of this job (saved on "
                    "another world size, no shared filesystem: they stayed on a node not in this job); falling back "
                    "to checkpoint-4", f"resuming from {tmp_path / 'checkpoint-4'}"], said
