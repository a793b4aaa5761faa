"""Keep off the screen what a user cannot act on: DeepSpeed's "Setting accelerator to CPU" guess (logged on
import by every CPU process, with or without DeepSpeed in the config) and transformers 5's
`is_gradient_checkpointing` deprecation, which peft triggers. Stdlib only: the CLI and the worker both call it."""

from __future__ import annotations

import logging
import warnings

_DROPPED_LOG_LINES = {"DeepSpeed": ("Setting accelerator to CPU",)}


class _Drop(logging.Filter):
    """Drops records whose message starts with one of `prefixes`."""

    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def quiet_third_party() -> None:
    """Install the filters (idempotent); call before transformers, peft or DeepSpeed are imported."""
    for name, prefixes in _DROPPED_LOG_LINES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) for f in logger.filters):
            logger.addFilter(_Drop(prefixes))
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
