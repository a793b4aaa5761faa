"""One exception type per layer; the CLI turns any `OrchError` into a one-line message and exit code 2."""

from __future__ import annotations


class OrchError(Exception):
    """A mistake the user can fix (bad input, unknown node, ...): printed without a traceback, exit 2."""


class InventoryError(OrchError):
    """The cluster inventory (TOML) is malformed or inconsistent."""


class PlanError(OrchError):
    """A job cannot be planned from the inventory and the arguments given."""


class RemoteError(OrchError):
    """A node could not be reached or a remote command failed."""


class JobError(OrchError):
    """A job does not exist or is in the wrong state for the request."""


class ConfigError(OrchError):
    """A training config (YAML) is malformed: unknown key, bad value, missing file."""


class DataError(OrchError):
    """A data file is malformed: names the file, line and problem."""


def located(path: str, line: int | None, message: str) -> str:
    """Format `file:line: message` (line omitted when unknown)."""
    return f"{path}:{line}: {message}" if line else f"{path}: {message}"
