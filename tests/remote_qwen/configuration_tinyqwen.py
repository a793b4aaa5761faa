"""Config of the Qwen-v1-shaped test model (a Llama under another `model_type`, code shipped in the folder)."""

from transformers import LlamaConfig


class TinyQwenConfig(LlamaConfig):
    model_type = "tinyqwen"
