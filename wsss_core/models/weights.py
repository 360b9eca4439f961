"""Pretrained weights as local files named in ``config.yaml`` (``weights.files.<key>``).

Machines without internet cannot download weights at run time, so every pretrained network is loaded
from a local file. ``weights.use_hub: true`` lets timm download instead on machines that can.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsss_core.errors import InputError


class MissingWeightsError(InputError, FileNotFoundError):
    """A weight file named in the configuration is absent."""


@dataclass(frozen=True)
class PretrainedWeights:
    """Where one backbone's pretrained weights come from."""

    key: str  # name under weights.files in config.yaml
    path: Path | None  # local file, or None when use_hub is set and no file is given
    use_hub: bool


class WeightsCatalog:
    """Resolves weight keys used by method configs to checked local files."""

    def __init__(self, files: Mapping[str, str | None], use_hub: bool = False) -> None:
        self.files = dict(files)
        self.use_hub = use_hub

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> "WeightsCatalog":
        config = config or {}
        return cls(config.get("files", {}), bool(config.get("use_hub", False)))

    def get(self, key: str | None) -> PretrainedWeights | None:
        """The weights for ``key``; None means random initialisation (``weights: null`` in a method).

        A key that is missing from the config, or a file that does not exist, stops with a message
        naming the key and the file, unless the hub is allowed.
        """
        if key is None:
            return None
        if key not in self.files:
            if self.use_hub:
                return PretrainedWeights(key, None, True)
            known = ", ".join(sorted(self.files)) or "none"
            raise MissingWeightsError(
                f"no weight file configured for '{key}': add weights.files.{key}: /path/to/file in "
                f"config.yaml (known keys: {known}), or set weights.use_hub: true on a machine with internet"
            )
        value = self.files[key]
        if value is None or not Path(value).is_file():
            if self.use_hub:
                return PretrainedWeights(key, None, True)
            raise MissingWeightsError(
                f"weight file '{value}' (config key weights.files.{key}) does not exist: download it "
                f"and set weights.files.{key} to its path, or set weights.use_hub: true on a machine "
                f"with internet"
            )
        return PretrainedWeights(key, Path(value), False)
