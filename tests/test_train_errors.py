"""A mistake only the worker can find, under `orch train` (real torchrun): the worker's one line, exit 2, once
however many ranks found it, and none of torchrun's failure block."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
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
    (folder / "long.yaml").write_text(demo.replace("training_args:", "training_args:\n  max_steps: 100000"))
    return folder


@pytest.fixture(scope="module")
def refused(workspace: Path) -> dict[str, subprocess.CompletedProcess]:
    """`orch train CONFIG` of the three refused configs, side by side (each is mostly its processes importing torch
    and transformers, one core each): config -> the finished process."""
    extra = {"resume600.yaml": ("--nproc-per-node", "2"), "modules.yaml": (), "typo.yaml": ()}
    with ThreadPoolExecutor(max_workers=len(extra)) as pool:
        started = {name: pool.submit(orch, "train", name, *args, cwd=workspace, timeout=600)
                   for name, args in extra.items()}
    return {name: run.result() for name, run in started.items()}


def test_a_missing_checkpoint_on_two_ranks_is_one_line(refused):
    proc = refused["resume600.yaml"]
    assert_refused(proc, "resume_from_checkpoint", "checkpoint-600")
    assert "torch.distributed.elastic" not in proc.stderr
    # noise the user cannot act on stays off the screen (the run got as far as the model and peft)
    assert "Setting accelerator to CPU" not in proc.stderr and "is_gradient_checkpointing" not in proc.stderr


def test_unknown_lora_target_modules_is_one_line(refused):
    assert_refused(refused["modules.yaml"], "modules.yaml", "lora.target_modules")


def test_a_training_args_typo_is_one_line_from_the_one_process_worker(refused):
    """One process runs the worker in orch's own process: the name check against transformers happens there, and
    still reaches the user as one line, exit 2."""
    assert_refused(refused["typo.yaml"], "typo.yaml", "training_args.warmup_stepz",
                   "did you mean training_args.warmup_steps")


def test_ctrl_c_ends_a_one_process_run_with_one_line_and_exit_130(workspace):
    """One process runs the worker inside `orch train`: Ctrl-C (SIGINT to the process) ends it with one line."""
    import signal
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "train", "long.yaml"], cwd=workspace,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in proc.stdout:  # the run summary is printed just before the first step
        seen.append(line)
        if "training samples:" in line:
            break
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    output = "".join(seen) + rest
    assert proc.returncode == 130, output[-3000:]
    assert "orch train: interrupted" in output and "Traceback" not in output, output[-3000:]
