"""Typed errors. Every error a user can cause carries a message they can act on."""

from __future__ import annotations

import re
from collections.abc import Callable


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


class OptionError(EdgepruneError):
    """An option (a config field or a keyword argument) has a value that cannot be honoured.

    Option names in the message are written in backticks (```max_layer_ratio```); the CLI shows
    each as the flag that sets it (``--max-layer-ratio``).
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def with_names(self, rename: Callable[[str], str]) -> str:
        """The message with each backticked option name replaced by ``rename(name)``."""
        return re.sub(r"`([a-z_0-9]+)`", lambda m: rename(m.group(1)), self.message)
