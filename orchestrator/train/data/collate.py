"""Batch collation: padding for plain rows, padding-free position_ids for packed rows.

Packed rows carry no `attention_mask`: transformers >= 4.53 (`masking_utils.find_packed_sequence_indices`) then
detects the sample boundaries from `position_ids` restarting at 0 and builds a block-diagonal causal mask for
eager/sdpa attention (flash-attention uses the same position_ids for varlen kernels). That detection is skipped
when a KV cache exists, so packed batches also carry `use_cache=False`. Older transformers get that block-diagonal
mask from us as a 4-D `attention_mask` (compat.py). Padding after the last sample gets its own position run and
label -100.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from orchestrator.train.compat import detects_packed_rows, packed_attention_mask
from orchestrator.train.data.encoding import IGNORE_INDEX


def _padded_length(longest: int, multiple: int | None) -> int:
    """`longest` rounded up to a multiple of `multiple`."""
    if not multiple:
        return longest
    return (longest + multiple - 1) // multiple * multiple


def _pad(rows: list[list[int]], length: int, value: int) -> torch.Tensor:
    """Right-pad lists of ints to `length` as a 2-D long tensor."""
    return torch.tensor([row + [value] * (length - len(row)) for row in rows], dtype=torch.long)


def make_collator(tokenizer, packing: bool, pad_to_multiple_of: int | None = None) -> Callable[[list[dict]], dict]:
    """A collate function for items from `build_sft_datasets` (packed or not)."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        pad_id = 0

    def collate(items: list[dict]) -> dict:
        length = _padded_length(max(len(it["input_ids"]) for it in items), pad_to_multiple_of)
        batch = {
            "input_ids": _pad([it["input_ids"] for it in items], length, pad_id),
            "labels": _pad([it["labels"] for it in items], length, IGNORE_INDEX),
        }
        if packing:
            # padding continues as one more "sample" whose positions restart at 0
            batch["position_ids"] = torch.tensor(
                [it["position_ids"] + list(range(length - len(it["position_ids"]))) for it in items],
                dtype=torch.long,
            )
            batch["use_cache"] = False
            if not detects_packed_rows():  # transformers < 4.53: no boundaries from position_ids, so a 4-D mask
                batch["attention_mask"] = packed_attention_mask(batch["position_ids"])
        else:
            batch["attention_mask"] = _pad([[1] * len(it["input_ids"]) for it in items], length, 0)
        return batch

    return collate
