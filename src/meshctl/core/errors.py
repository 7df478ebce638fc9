"""Exceptions the CLI turns into clean messages and exit codes (never a traceback)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: How much of a value a message quotes: enough to find it, not a megabyte of input.
QUOTE_LIMIT = 200
MESSAGE_LIMIT = 1000  # long enough for a message with its hint


def shorten(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)``, cut in the middle when longer than about ``limit`` characters."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}...{text[-20:]} ({len(text)} characters)"


class MeshctlError(Exception):
    """An error the user can act on. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(MeshctlError):
    exit_code = 2


class PluginError(MeshctlError):
    """A plugin failed to load, registered a duplicate name, or implements an unknown hook."""

    exit_code = 3


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One finding of topology validation, located in the file it came from."""

    file: str
    line: int
    col: int
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        message = self.message
        if len(message) > MESSAGE_LIMIT:  # a rule quoting a 1 MB value: show its start
            message = f"{message[:MESSAGE_LIMIT - 60]}... ({len(message)} characters)"
        return f"{self.file}:{self.line}:{self.col}: {prefix}{message}"


class TopologyError(MeshctlError):
    """The topology file is invalid; carries every error found, not only the first."""

    exit_code = 2

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sorted(diagnostics)
        errors = [d for d in self.diagnostics if d.severity == "error"]
        super().__init__(f"{len(errors)} error(s) in topology")

    def render(self) -> str:
        return "\n".join(str(d) for d in self.diagnostics)
