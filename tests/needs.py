"""A test whose real component (a package, a browser, root, a second Python env) is missing: skipped loudly on a
developer's machine, failed under CI=true, where the suite must never pass without it."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def missing(reason: str) -> None:
    """Fail under CI=true, else skip (also at module level) naming what is missing."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}: the test must run, not skip", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY: {reason}", allow_module_level=True)


def need_module(name: str) -> ModuleType:
    """Import `name`, or fail/skip as `missing` does."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"{name} is not installed (scripts/setup.sh installs it)")
        raise
