"""Packing keeps samples apart only if the model's attention honours the packed layout orch feeds it (restarting
`position_ids`, and on transformers < 4.53 a 4-D block-diagonal mask; see data/collate.py). transformers' own
models do. Model code shipped in the folder may not: Qwen-7B-Chat v1's reads the mask as a 2-D padding mask and
ignores position ids, so a 4-D mask fails on a tensor size mismatch, and without one every sample attends to the
samples before it in the row.

`check_packing` measures it before training: two short samples packed in one row, through the collator the
Trainer uses, against the second sample alone; different logits (or an error) stop training with one line.
"""

from __future__ import annotations

from orchestrator.errors import ConfigError

TOLERANCE = 1e-3  # float32 logits of the same tokens under the same mask agree to ~1e-5


def honours_packing(model, collate, vocab_size: int) -> tuple[bool, str]:
    """(whether the second of two packed samples gets the logits it gets alone, what went wrong otherwise)."""
    import torch

    first, second = [11 % vocab_size, 12 % vocab_size, 13 % vocab_size], [21 % vocab_size, 22 % vocab_size,
                                                                           23 % vocab_size, 24 % vocab_size]
    packed = collate([{"input_ids": first + second, "labels": first + second,
                       "position_ids": list(range(len(first))) + list(range(len(second)))}])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            together = _logits(model, packed, device)[0, len(first):]
            alone = _logits(model, {"input_ids": torch.tensor([second]), "position_ids": torch.arange(len(second))[None],
                                    "attention_mask": torch.ones(1, len(second), dtype=torch.long)}, device)[0]
    except Exception as exc:  # noqa: BLE001 - model code: any failure means the layout is not supported
        return False, f"it fails on the packed layout ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    finally:
        model.train(was_training)
    gap = float((together.float() - alone.float()).abs().max())
    if gap > TOLERANCE:
        return False, f"a packed sample's logits differ from the same sample alone by {gap:.3g}, so packed samples attend to each other"
    return True, ""


def _logits(model, batch: dict, device):
    inputs = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items() if k != "labels"}
    return model(**inputs).logits


def is_own_code(model) -> bool:
    """Whether the (base) model's class comes from code shipped in its folder, not from transformers."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return not type(base).__module__.startswith("transformers.")


def check_packing(model, collate, vocab_size: int, model_dir: str, zero3: bool = False) -> None:
    """ConfigError (one line) when `data.packing` would let samples of the model at `model_dir` attend to each
    other. transformers' own model classes are trusted (the test suite measures them); under ZeRO-3 the weights
    are partitioned before training starts, so model code of the folder's own is refused unmeasured."""
    if not is_own_code(model):
        return
    if zero3:
        raise ConfigError(f"data.packing: {model_dir} runs its own model code, whose attention cannot be checked for "
                          "the packed layout under ZeRO-3; set packing: false (or train it once without ZeRO-3)")
    ok, why = honours_packing(model, collate, vocab_size)
    if not ok:
        raise ConfigError(f"data.packing: the model code of {model_dir} does not keep packed samples apart: {why}; "
                          "set packing: false")
