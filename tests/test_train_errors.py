"""A mistake only the worker can find, under `orch train` (real torchrun): the worker's one line, exit 2, once
however many ranks found it, and none of torchrun's failure block."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.orch_cli import assert_refused, demo_project, orch


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = demo_project(tmp_path_factory.mktemp("errors") / "llm")
    demo = (folder / "demo.yaml").read_text().replace("report_to: tensorboard", "report_to: none")
    (folder / "resume600.yaml").write_text(demo + "resume_from_checkpoint: 600\n")
    (folder / "modules.yaml").write_text(demo.replace("target_modules: all-linear", "target_modules: [nope_proj]"))
    (folder / "typo.yaml").write_text(demo.replace("training_args:", "training_args:\n  warmup_stepz: 3"))
    return folder


def test_a_missing_checkpoint_on_two_ranks_is_one_line(workspace):
    proc = orch("train", "resume600.yaml", "--nproc-per-node", "2", cwd=workspace, timeout=600)
    assert_refused(proc, "resume_from_checkpoint", "checkpoint-600")
    assert "torch.distributed.elastic" not in proc.stderr
    # noise the user cannot act on stays off the screen (the run got as far as the model and peft)
    assert "Setting accelerator to CPU" not in proc.stderr and "is_gradient_checkpointing" not in proc.stderr


def test_unknown_lora_target_modules_is_one_line(workspace):
    assert_refused(orch("train", "modules.yaml", cwd=workspace, timeout=600), "modules.yaml", "lora.target_modules")


def test_a_training_args_typo_is_one_line_from_the_one_process_worker(workspace):
    """One process runs the worker in orch's own process: the name check against transformers happens there, and
    still reaches the user as one line, exit 2."""
    assert_refused(orch("train", "typo.yaml", cwd=workspace, timeout=600), "typo.yaml", "training_args.warmup_stepz",
                   "did you mean training_args.warmup_steps")
