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


class StoreError(InputError):
    """A seed or mask store is missing, or was written by another method or class count."""
