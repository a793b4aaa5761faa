"""orch: launch, watch and stop multi-node LLM fine-tuning over plain SSH, and the training worker it runs."""

import logging

__version__ = "0.1.0"

# bitsandbytes >= 0.50 on CPUs with AVX512-BF16 tries to fetch a fused 4-bit kernel from the HF hub through the
# optional `kernels` package and warns when it cannot. We never download at run time and its own CPU kernels work,
# so for the worker and the server that warning is only noise burying their first line (and config errors).
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
