"""Typed settings: the only copy of each default, next to the code that uses it; unknown keys, wrong
types and out-of-range values stop with one line naming the key."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from wsss_core.errors import ConfigError

S = TypeVar("S", bound="Settings")


def check_range(key: str, values: Sequence[float], low: float, high: float) -> None:
    """Every value of ``values`` in ``[low, high]``, else a ConfigError naming ``key``."""
    for value in values:
        if not low <= float(value) <= high:
            raise ConfigError(f"{key} = {list(values) if len(values) > 1 else value} is out of range [{low}, {high}]")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of a settings dataclass built from a config mapping."""

    @classmethod
    def from_config(cls: type[S], config: Mapping[str, Any] | None, where: str) -> S:
        config = dict(config or {})
        fields = {field.name: field for field in dataclasses.fields(cls)}
        unknown = sorted(set(config) - set(fields))
        if unknown:
            raise ConfigError(f"unknown key {where}.{unknown[0]} (known keys there: {', '.join(sorted(fields))})")
        values: dict[str, Any] = {}
        for key, value in config.items():
            default = fields[key].default
            if isinstance(default, tuple) and isinstance(value, (list, tuple)):
                if len(value) != len(default):
                    raise ConfigError(f"{where}.{key} must have {len(default)} values, got {value!r}")
                value = tuple(type(d)(v) for d, v in zip(default, value))
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ConfigError(f"{where}.{key} must be true or false, got {value!r}")
            elif isinstance(default, (int, float)) and default is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"{where}.{key} must be a number, got {value!r}")
                if isinstance(default, int) and not isinstance(default, bool) and float(value) != int(value):
                    raise ConfigError(f"{where}.{key} must be an integer, got {value!r}")
                value = type(default)(value)
            values[key] = value
        try:
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{where}.{error}") from None
