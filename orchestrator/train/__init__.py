"""The training worker that torchrun starts on every node. Never imports `orchestrator.jobs` or `.cluster`."""
