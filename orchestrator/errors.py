"""One exception type per layer; the CLI turns any `OrchError` into a one-line message and exit code 2."""

from __future__ import annotations


class OrchError(Exception):
    """A mistake the user can fix (bad input, unknown node, ...): printed without a traceback, exit 2.

    One line whatever a file held: a newline in the message (a key or path read from a mangled file) shows as `\\n`,
    unless the error is a list of problems by design (`multiline`)."""

    multiline = False

    def __str__(self) -> str:
        text = super().__str__()
        return text if self.multiline else text.replace("\r", "\\r").replace("\n", "\\n")


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
