"""Helper run in a subprocess by tests/test_train_resume.py: (A) 12 uninterrupted steps; (B) the same config
stopped after the checkpoint at step 6, then resumed with `resume_from_checkpoint: latest` to step 12. Prints
the largest absolute weight difference between A and B, and the step B resumed from."""

import json
import sys
from pathlib import Path

from orchestrator.train.config import load_config
from orchestrator.train.run import run

CONFIG = """\
model: {model}
stage: sft
finetuning: full
data: {{train: [{data}], template: chatml, max_length: 128, packing: true}}
resume_from_checkpoint: {resume}
training_args: {{output_dir: {out}, max_steps: {steps}, per_device_train_batch_size: 4, learning_rate: 2.0e-3,
                 lr_scheduler_type: constant, logging_steps: 3, save_steps: 6, report_to: none, seed: 5}}
"""


def train(work: Path, name: str, out: Path, steps: int, resume: str, model: str, data: str) -> None:
    config = work / f"{name}.yaml"
    config.write_text(CONFIG.format(model=model, data=data, out=out, steps=steps, resume=resume))
    run(load_config(config))


def main(model: str, data: str, work: str) -> None:
    from safetensors.torch import load_file

    root = Path(work)
    root.mkdir(parents=True, exist_ok=True)
    train(root, "a", root / "a", 12, "null", model, data)
    train(root, "b1", root / "b", 6, "null", model, data)
    train(root, "b2", root / "b", 12, "latest", model, data)
    a, b = load_file(root / "a" / "model.safetensors"), load_file(root / "b" / "model.safetensors")
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    moved = max(float((a[k] - load_file(root / "b" / "checkpoint-6" / "model.safetensors")[k]).abs().max())
                for k in a)
    state = json.loads((root / "b" / "checkpoint-12" / "trainer_state.json").read_text())
    print("RESULT " + json.dumps({"max_diff": diff, "moved_since_6": moved, "global_step": state["global_step"]}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
