"""Model code shipped inside the test model folder, attending as Qwen-7B-Chat v1's modeling_qwen.py does: the
attention mask is read as a 2-D padding mask (`view(batch, -1)`, broadcast over the queries and added to the
attention weights) and position ids are not used (its rotary embedding counts positions itself). So a 4-D mask
fails on a tensor size mismatch, and samples packed into one row attend to each other."""

import torch
from transformers import LlamaForCausalLM

from .configuration_tinyqwen import TinyQwenConfig


def _cached_length(past) -> int:
    if past is None:
        return 0
    if hasattr(past, "get_seq_length"):
        return int(past.get_seq_length())
    return int(past[0][0].shape[-2]) if len(past) else 0


class TinyQwenForCausalLM(LlamaForCausalLM):
    config_class = TinyQwenConfig

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, **kwargs):
        if attention_mask is not None:
            rows, queries = (input_ids if input_ids is not None else kwargs["inputs_embeds"]).shape[:2]
            attention_mask = attention_mask.view(rows, -1)
            keys = queries + _cached_length(kwargs.get("past_key_values"))
            # the shape of the attention weights it is added to: (batch, heads, queries, keys)
            torch.zeros(rows, 1, queries, keys) + attention_mask[:, None, None, :]
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
