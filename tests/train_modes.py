"""Helper run in a subprocess by tests/test_train_modes.py: train each fine-tuning mode a few steps on a small
memorisable set in one process (one Trainer import) and print each mode's first and last logged loss as JSON."""

import json
import sys
from pathlib import Path

from orchestrator.train.config import load_config
from orchestrator.train.run import run

CONFIG = """\
model: {model}
stage: sft
finetuning: {mode}
data: {{train: [{data}], template: chatml, max_length: 128, packing: true}}
lora: {{r: 8, alpha: 16, dropout: 0.0, target_modules: all-linear}}
qlora: {{bits: 4, quant_type: nf4, compute_dtype: float32}}
freeze: {{trainable_fraction: 0.5, extra_trainable: [embed_tokens]}}
training_args: {{output_dir: {out}, max_steps: 30, per_device_train_batch_size: 4, learning_rate: {lr},
                 logging_steps: 5, save_steps: 30, report_to: none, seed: 1}}
"""
LEARNING_RATES = {"full": 3e-3, "lora": 1e-2, "qlora": 1e-2, "freeze": 3e-3}


def main(model: str, data: str, work: str, modes: list[str]) -> None:
    result = {}
    Path(work).mkdir(parents=True, exist_ok=True)
    for mode in modes:
        out = Path(work) / mode
        config = Path(work) / f"{mode}.yaml"
        config.write_text(CONFIG.format(model=model, mode=mode, data=data, out=out, lr=LEARNING_RATES[mode]))
        run(load_config(config))
        history = json.loads((out / "checkpoint-30" / "trainer_state.json").read_text())["log_history"]
        losses = [entry["loss"] for entry in history if "loss" in entry]
        result[mode] = {"first": losses[0], "last": losses[-1], "files": sorted(p.name for p in out.iterdir())}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(","))
