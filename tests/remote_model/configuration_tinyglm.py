"""Config of the ChatGLM3-like test model (its own code, `model_type: chatglm` as ChatGLM3's config.json says).

`pre_seq_len` switches on the model's own P-Tuning v2 prefix encoder (`prefix_projection`: through a 2-layer MLP),
as ChatGLM3's configuration does; the finetune guide sets it from `peft_config.num_virtual_tokens`.
"""

from transformers import PretrainedConfig


class TinyGLMConfig(PretrainedConfig):
    model_type = "chatglm"
    attribute_map = {"num_hidden_layers": "num_layers"}  # transformers 5's generate sizes its cache by it

    def __init__(self, num_layers=2, padded_vocab_size=512, hidden_size=64, ffn_hidden_size=128, kv_channels=16,
                 num_attention_heads=4, multi_query_group_num=2, seq_length=2048, layernorm_epsilon=1e-5,
                 pre_seq_len=None, prefix_projection=False, **kwargs):
        self.num_layers = num_layers
        self.vocab_size = padded_vocab_size
        self.padded_vocab_size = padded_vocab_size
        self.hidden_size = hidden_size
        self.ffn_hidden_size = ffn_hidden_size
        self.kv_channels = kv_channels
        self.num_attention_heads = num_attention_heads
        self.multi_query_group_num = multi_query_group_num
        self.seq_length = seq_length
        self.layernorm_epsilon = layernorm_epsilon
        self.pre_seq_len = pre_seq_len
        self.prefix_projection = prefix_projection
        self.use_cache = kwargs.pop("use_cache", True)
        super().__init__(**kwargs)
