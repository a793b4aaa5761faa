"""For the resume tests: `ORCH_DUMP_STATE=DIR` makes global rank 0 write the gathered training state (each
trainable parameter in fp32 and its Adam moments, whole, however ZeRO partitions them) to `DIR/saved-<step>.pt`
after every checkpoint and to `DIR/resumed-<step>.pt` once a resumed run has loaded its checkpoint, so a test can
compare what was saved on one world size with what another world size resumed with.
"""

from __future__ import annotations

import os
from pathlib import Path

MOMENTS = ("exp_avg", "exp_avg_sq")


def gathered_state(model, optimizer) -> dict[str, dict]:
    """{parameter name: {"param", "exp_avg", "exp_avg_sq"}} for every trainable parameter, whole and in fp32
    (a collective under DeepSpeed: every rank must call it)."""
    inner = getattr(optimizer, "optimizer", optimizer)
    relink_zero_moments(inner)
    state = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if hasattr(param, "_hp_mapping") or hasattr(param, "ds_id"):  # DeepSpeed ZeRO
            from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

            entry = {"param": safe_get_full_fp32_param(param)}
            for key in MOMENTS:
                try:
                    entry[key] = safe_get_full_optimizer_state(param, key)
                except ValueError:  # no state yet for this parameter's fragment (it has had no gradient)
                    entry[key] = None
        else:
            moments = getattr(inner, "state", {}).get(param, {})
            entry = {"param": param.detach().float(), **{key: moments.get(key) for key in MOMENTS}}
        state[name.replace("module.", "", 1) if name.startswith("module.") else name] = {
            key: None if value is None else value.detach().float().cpu().clone() for key, value in entry.items()}
    return state


def relink_zero_moments(optimizer) -> None:
    """ZeRO-1/2 links each parameter to its slice of the Adam moments once, right after the first parameter
    group's first step, so a second group (HF puts norms and biases, which get no weight decay, in their own) is
    linked before it has any moments and `safe_get_full_optimizer_state` never finds them. Link again now."""
    if hasattr(optimizer, "_hp_optimizer_states_linked") and hasattr(optimizer, "_lazy_init_hp_params_optimizer_state"):
        optimizer._hp_optimizer_states_linked = False
        optimizer._lazy_init_hp_params_optimizer_state()


def dump_callback():
    """A TrainerCallback writing the gathered state after each save and at a resumed run's start, or None when
    `ORCH_DUMP_STATE` is unset."""
    folder = os.environ.get("ORCH_DUMP_STATE")
    if not folder:
        return None
    from transformers import TrainerCallback

    def write(kind: str, state, model, optimizer) -> None:
        snapshot = gathered_state(model, optimizer)
        if state.is_world_process_zero:
            import torch

            Path(folder).mkdir(parents=True, exist_ok=True)
            torch.save(snapshot, Path(folder, f"{kind}-{state.global_step}.pt"))

    class DumpState(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            if state.global_step > 0:
                write("resumed", state, model, optimizer)

        def on_save(self, args, state, control, model=None, optimizer=None, **kwargs):
            write("saved", state, model, optimizer)

    return DumpState()
