"""Helper run in a subprocess by tests/test_train_modes.py: train each fine-tuning mode a few steps on a small
memorisable set in one process (one Trainer import) and print, as JSON, each mode's first and last logged loss and
what the model the Trainer trained looked like (4-bit layers; which parameters moved)."""

import json
import sys
from pathlib import Path

import torch
import transformers

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


OBSERVED: dict = {}


def observe_training() -> None:
    """Wrap Trainer.train to look at the very model being trained: its bitsandbytes 4-bit linears, and which
    parameters (trainable or frozen) changed bit for bit over the run."""
    train = transformers.Trainer.train

    def observed(self, *args, **kwargs):
        import bitsandbytes as bnb

        params = dict(self.model.named_parameters())
        trainable = {name for name, p in params.items() if p.requires_grad}
        before = {name: p.detach().clone() for name, p in params.items() if not isinstance(p, bnb.nn.Params4bit)}
        result = train(self, *args, **kwargs)
        moved = {name for name, old in before.items() if not torch.equal(old, params[name].detach())}
        OBSERVED.update(
            linear4bit=sum(isinstance(m, bnb.nn.Linear4bit) for m in self.model.modules()),
            plain_linear_in_layers=sum(type(m) is torch.nn.Linear and ".layers." in name and "lora_" not in name
                                       for name, m in self.model.named_modules()),
            trainable=len(trainable), frozen=len(before) - len(trainable & set(before)),
            trainable_moved=len(trainable & moved), frozen_moved=sorted(moved - trainable))
        return result

    transformers.Trainer.train = observed


def main(model: str, data: str, work: str, modes: list[str]) -> None:
    result = {}
    Path(work).mkdir(parents=True, exist_ok=True)
    for mode in modes:
        out = Path(work) / mode
        config = Path(work) / f"{mode}.yaml"
        config.write_text(CONFIG.format(model=model, mode=mode, data=data, out=out, lr=LEARNING_RATES[mode]))
        OBSERVED.clear()
        run(load_config(config))
        history = json.loads((out / "checkpoint-30" / "trainer_state.json").read_text())["log_history"]
        losses = [entry["loss"] for entry in history if "loss" in entry]
        result[mode] = {"first": losses[0], "last": losses[-1], "files": sorted(p.name for p in out.iterdir()),
                        **OBSERVED}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    observe_training()
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(","))
