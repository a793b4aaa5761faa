"""What the benchmarks share."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "orchestrator"


def byte_compile_orch() -> None:
    """Byte-compile orch as `pip install` leaves it: an editable install (or PYTHONDONTWRITEBYTECODE) would compile
    its modules again on every command, which is not what a user's installed orch does."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(PACKAGE)], check=True, capture_output=True)


# A full fine-tune under ZeRO-2 of the demo project's data (`zero2_project`), as the checkpoint benchmarks train it.
ZERO2_FULL = """\
model: base
stage: sft
finetuning: full
data: {{train: [data/train.jsonl], template: chatml, max_length: 128, packing: true}}
deepspeed: zero2
training_args: {{output_dir: out, max_steps: {steps}, per_device_train_batch_size: 2, save_steps: {save_steps},
                 report_to: none, learning_rate: 1.0e-4, logging_steps: 1}}
"""


def zero2_project(work: Path, hidden: int, layers: int) -> None:
    """The demo project at `work` with a bigger base model (a Llama of `hidden` x `layers`; nothing from a hub)."""
    import shutil

    from orchestrator.demo import build_project
    from orchestrator.train.tiny import build_tiny_model

    build_project(work, epochs=1)
    shutil.rmtree(work / "base")
    build_tiny_model(work / "base", hidden_size=hidden, num_layers=layers)
