"""A tiny ChatGLM3-like model (written here; behaviour checked against ChatGLM3's modeling code).

What it reproduces, because orch has to live with it:
- module names: `transformer.embedding.word_embeddings`, `transformer.encoder.layers[i].self_attention.
  query_key_value` (fused q/k/v, grouped keys/values) and `.dense`, `mlp.dense_h_to_4h` / `dense_4h_to_h`,
  `transformer.output_layer` (the LM head, untied);
- sequence-first tensors ([seq, batch, ...]) and key/value caches as tuples of (key, value) per layer, each
  [seq, batch, groups, head_dim];
- masks: a 2-D padding mask only; `get_masks` builds the causal mask from it and reads the cache length as
  `past_key_values[0][0].shape[0]`, so peft's prefix tuning (keys/values laid out [batch, heads, seq, dim]) breaks
  it with a size mismatch, as it breaks ChatGLM3;
- its own P-Tuning v2: with `config.pre_seq_len` every existing weight is frozen and `transformer.prefix_encoder`
  (an embedding, or an MLP with `prefix_projection`) produces the keys/values of `pre_seq_len` virtual tokens;
- `_init_weights` does nothing: weights missing from a checkpoint (a new prefix encoder) are not initialised;
- the loss is computed inside `forward` from `labels`; generation keeps `position_ids` and the 2-D mask growing.
Unlike ChatGLM3's code it also runs on transformers 5 (post_init, GenerationMixin, no `standardize_cache_format`,
prefix positions made where they are used, not a plain tensor attribute that 5's meta-device init leaves empty),
so the main stack can test what orch does with such a model.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.generation.utils import GenerationMixin
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .configuration_tinyglm import TinyGLMConfig


class PrefixEncoder(nn.Module):
    """Keys and values of the virtual tokens for every layer: (batch, pre_seq_len, layers * 2 * groups * dim)."""

    def __init__(self, config):
        super().__init__()
        width = config.num_layers * config.kv_channels * config.multi_query_group_num * 2
        self.prefix_projection = config.prefix_projection
        self.embedding = nn.Embedding(config.pre_seq_len, width)
        if self.prefix_projection:
            self.trans = nn.Sequential(nn.Linear(width, config.hidden_size), nn.Tanh(),
                                       nn.Linear(config.hidden_size, width))

    def forward(self, prefix):
        out = self.embedding(prefix)
        return self.trans(out) if self.prefix_projection else out


class RMSNorm(nn.Module):
    def __init__(self, width, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x):
        scale = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * (x.float() * scale)).to(x.dtype)


def rotary(x, positions):
    """Rotate the first half of each head's channels by angles from `positions` ([batch, seq]); x: [seq, b, h, d]."""
    dim = x.shape[-1] // 2
    freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, device=x.device, dtype=torch.float32) / dim))
    angle = (positions.t().float()[..., None] * freq)[:, :, None, :]  # [seq, b, 1, dim/2]
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    even, odd = x[..., :dim:2], x[..., 1:dim:2]
    turned = torch.stack((even * cos - odd * sin, odd * cos + even * sin), -1).flatten(-2)
    return torch.cat((turned, x[..., dim:]), -1)


class SelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.heads, self.groups, self.dim = config.num_attention_heads, config.multi_query_group_num, config.kv_channels
        self.query_key_value = nn.Linear(config.hidden_size, (self.heads + 2 * self.groups) * self.dim, bias=True)
        self.dense = nn.Linear(self.heads * self.dim, config.hidden_size, bias=False)

    def forward(self, hidden, mask, positions, kv_cache=None, use_cache=True):
        seq, batch, _ = hidden.shape
        q, k, v = self.query_key_value(hidden).split(
            [self.heads * self.dim, self.groups * self.dim, self.groups * self.dim], -1)
        q = rotary(q.view(seq, batch, self.heads, self.dim), positions)
        k = rotary(k.view(seq, batch, self.groups, self.dim), positions)
        v = v.view(seq, batch, self.groups, self.dim)
        if kv_cache is not None:
            k, v = torch.cat((kv_cache[0], k), 0), torch.cat((kv_cache[1], v), 0)
        present = (k, v) if use_cache else None
        repeat = self.heads // self.groups
        q, k, v = [t.permute(1, 2, 0, 3) for t in (q, k.repeat_interleave(repeat, 2), v.repeat_interleave(repeat, 2))]
        if mask is None and q.shape[2] == k.shape[2]:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            out = F.scaled_dot_product_attention(q, k, v, None if mask is None else ~mask)
        return self.dense(out.permute(2, 0, 1, 3).reshape(seq, batch, -1)), present


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(config.hidden_size, config.ffn_hidden_size * 2, bias=False)
        self.dense_4h_to_h = nn.Linear(config.ffn_hidden_size, config.hidden_size, bias=False)

    def forward(self, x):
        gate, up = self.dense_h_to_4h(x).chunk(2, -1)
        return self.dense_4h_to_h(F.silu(gate) * up)


class GLMLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.layernorm_epsilon)
        self.self_attention = SelfAttention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.layernorm_epsilon)
        self.mlp = MLP(config)

    def forward(self, hidden, mask, positions, kv_cache=None, use_cache=True):
        attended, present = self.self_attention(self.input_layernorm(hidden), mask, positions, kv_cache, use_cache)
        hidden = hidden + attended
        return hidden + self.mlp(self.post_attention_layernorm(hidden)), present


class Encoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layers = nn.ModuleList(GLMLayer(config) for _ in range(config.num_layers))
        self.final_layernorm = RMSNorm(config.hidden_size, config.layernorm_epsilon)

    def forward(self, hidden, mask, positions, kv_caches=None, use_cache=True):
        presents = () if use_cache else None
        for i, layer in enumerate(self.layers):
            hidden, present = layer(hidden, mask, positions, kv_caches[i] if kv_caches else None, use_cache)
            if use_cache:
                presents += (present,)
        return self.final_layernorm(hidden), presents


class Embedding(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.padded_vocab_size, config.hidden_size)

    def forward(self, input_ids):
        return self.word_embeddings(input_ids).transpose(0, 1).contiguous()  # [seq, batch, hidden]


class TinyGLMPreTrainedModel(PreTrainedModel):
    config_class = TinyGLMConfig
    base_model_prefix = "transformer"
    _no_split_modules = ["GLMLayer"]
    supports_gradient_checkpointing = False

    def _init_weights(self, module):
        return

    def get_masks(self, input_ids, past_key_values, padding_mask=None):
        """Boolean mask [batch, 1, seq, past + seq], True = masked: causal, cached positions visible, padding out."""
        batch, seq = input_ids.shape
        allowed = torch.ones(batch, seq, seq, device=input_ids.device).tril_()
        past = past_key_values[0][0].shape[0] if past_key_values else 0
        if past:
            allowed = torch.cat((torch.ones(batch, seq, past, device=input_ids.device), allowed), -1)
        if padding_mask is not None:
            allowed = allowed * padding_mask.unsqueeze(1)
            if not past:
                allowed -= padding_mask.unsqueeze(-1) - 1
        return (allowed < 0.5).bool().unsqueeze(1)


class TinyGLMModel(TinyGLMPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embedding = Embedding(config)
        self.encoder = Encoder(config)
        self.output_layer = nn.Linear(config.hidden_size, config.padded_vocab_size, bias=False)
        self.num_layers, self.groups, self.kv_channels = config.num_layers, config.multi_query_group_num, \
            config.kv_channels
        self.pre_seq_len = config.pre_seq_len
        if self.pre_seq_len is not None:
            for param in self.parameters():
                param.requires_grad = False
            self.prefix_encoder = PrefixEncoder(config)
            self.dropout = nn.Dropout(0.1)

    def get_input_embeddings(self):
        return self.embedding.word_embeddings

    def get_prompt(self, batch_size, device, dtype):
        tokens = torch.arange(self.pre_seq_len, device=device).unsqueeze(0).expand(batch_size, -1)
        kv = self.prefix_encoder(tokens).type(dtype)
        kv = kv.view(batch_size, self.pre_seq_len, self.num_layers * 2, self.groups, self.kv_channels)
        return self.dropout(kv).permute([2, 1, 0, 3, 4]).split(2)

    def forward(self, input_ids, position_ids=None, attention_mask=None, full_attention_mask=None,
                past_key_values=None, inputs_embeds=None, use_cache=None, output_hidden_states=None,
                return_dict=None):
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        batch, seq = input_ids.shape
        if inputs_embeds is None:
            inputs_embeds = self.embedding(input_ids)
        if self.pre_seq_len is not None:
            if past_key_values is None:
                past_key_values = self.get_prompt(batch, input_ids.device, inputs_embeds.dtype)
            if attention_mask is not None:
                attention_mask = torch.cat([attention_mask.new_ones((batch, self.pre_seq_len)), attention_mask], -1)
        if full_attention_mask is None:
            if (attention_mask is not None and not attention_mask.all()) or (past_key_values and seq != 1):
                full_attention_mask = self.get_masks(input_ids, past_key_values, padding_mask=attention_mask)
        if position_ids is None:
            position_ids = torch.arange(seq, device=input_ids.device).unsqueeze(0).expand(batch, -1)
        hidden, presents = self.encoder(inputs_embeds, full_attention_mask, position_ids, past_key_values, use_cache)
        return BaseModelOutputWithPast(last_hidden_state=hidden, past_key_values=presents)


class TinyGLMForCausalLM(TinyGLMPreTrainedModel, GenerationMixin):
    def __init__(self, config):
        super().__init__(config)
        self.transformer = TinyGLMModel(config)
        self.post_init()  # transformers 5 needs it (ChatGLM3's code omits it, one reason it cannot run there)

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None, position_ids=None,
                                      use_cache=None, is_first_forward=True, **kwargs):
        if hasattr(past_key_values, "get_seq_length") and not past_key_values.get_seq_length():
            past_key_values = None  # transformers 5 hands an empty cache object in; this code keeps tuples
        if position_ids is None:
            position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0).repeat(
                input_ids.shape[0], 1)
        if not is_first_forward and past_key_values is not None:
            position_ids, input_ids = position_ids[..., -1:], input_ids[:, -1:]
        return {"input_ids": input_ids, "past_key_values": past_key_values, "position_ids": position_ids,
                "attention_mask": attention_mask, "return_last_logit": True, "use_cache": use_cache}

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False, **kwargs):
        model_kwargs["past_key_values"] = outputs.past_key_values
        if model_kwargs.get("attention_mask") is not None:
            mask = model_kwargs["attention_mask"]
            model_kwargs["attention_mask"] = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], -1)
        if "position_ids" in model_kwargs:
            positions = model_kwargs["position_ids"]
            model_kwargs["position_ids"] = torch.cat([positions, positions[..., -1:] + 1], -1)
        model_kwargs["is_first_forward"] = False
        return model_kwargs

    def forward(self, input_ids=None, position_ids=None, attention_mask=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, return_last_logit=False):
        out = self.transformer(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                               past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache)
        hidden = out.last_hidden_state[-1:] if return_last_logit else out.last_hidden_state
        logits = self.transformer.output_layer(hidden).transpose(0, 1).contiguous()
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                   labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=out.past_key_values)
