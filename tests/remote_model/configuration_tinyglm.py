"""Config of the test model that ships its own code (a Llama under another `model_type`, as ChatGLM3/Qwen do)."""

from transformers import LlamaConfig


class TinyGLMConfig(LlamaConfig):
    model_type = "tinyglm"
