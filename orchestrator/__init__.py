"""orch: launch, watch and stop multi-node LLM fine-tuning over plain SSH, and the training worker it runs."""

__version__ = "0.1.0"
