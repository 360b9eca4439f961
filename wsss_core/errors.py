"""Errors about bad input. Each message names the file or configuration key at fault and the fix.

Stages print these as one line (no traceback); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad input from the user: a dataset, list, image, label, config value or weight file."""


class DatasetError(InputError):
    """A dataset root, split list, image or label file is missing, unreadable or inconsistent."""


class ConfigError(InputError):
    """A configuration value is missing, misspelt or of the wrong type."""


class DiskFullError(InputError):
    """The file system refused a write (disk full, quota, file-size limit): the message names the file
    and the space left, which the library's own error ("unexpected pos ...") does not."""


class StoreError(InputError):
    """A seed or mask store is missing, or was written by another method or class count."""


def summarize(error: BaseException, max_lines: int = 2) -> str:
    """``Type: message`` of a library error on one line, for an InputError that wraps it: its first
    ``max_lines`` lines (e.g. torch's "Error(s) in loading state_dict" and the first size mismatch),
    and how many more there were, since stages print an InputError as one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = " ".join(lines[:max_lines])
    if len(lines) > max_lines:
        text += f" ... ({len(lines) - max_lines} more lines)"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
