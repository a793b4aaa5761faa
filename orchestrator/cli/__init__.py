"""The `orch` command line: click commands only, each parses, calls one function and prints.

Commands live in one module per area (jobs, data, train, serve); importing them registers them on `cli`.
"""

from __future__ import annotations

import importlib

from orchestrator.cli.app import cli

_COMMAND_MODULES = ("jobs", "doctor", "data", "train", "serve", "demo", "dashboard")

for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"orchestrator.cli.{_name}")
    except ModuleNotFoundError as exc:  # a module not written yet, never a missing dependency of one
        if exc.name != f"orchestrator.cli.{_name}":
            raise


def main() -> None:
    """Console-script entry point."""
    cli()
