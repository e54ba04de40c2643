"""Typed errors. Every error a user can cause carries a message they can act on."""

from __future__ import annotations


class EdgepruneError(Exception):
    """Base class: the CLI prints the message (no traceback) and exits with status 1."""


class ConfigError(EdgepruneError):
    """A target, recipe or other data file is malformed.

    The message names the file, the field and what was expected.
    """


class MissingBackendError(EdgepruneError, ImportError):
    """An optional backend is not installed; the message names the extra that provides it."""

    def __init__(self, module: str, extra: str, purpose: str = ""):
        self.module = module
        self.extra = extra
        what = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"'{module}' is not installed{what}. Install it with: pip install 'edgeprune[{extra}]'"
        )


class UnsafeCheckpointError(EdgepruneError):
    """A checkpoint wants to unpickle something outside the allow-list."""
