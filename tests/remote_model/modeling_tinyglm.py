"""Model code shipped inside the model folder: transformers runs it only with `trust_remote_code=True`."""

from transformers import LlamaForCausalLM

from .configuration_tinyglm import TinyGLMConfig


class TinyGLMForCausalLM(LlamaForCausalLM):
    config_class = TinyGLMConfig
