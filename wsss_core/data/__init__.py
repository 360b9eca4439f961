"""Datasets: readers for PASCAL VOC / COCO (and the synthetic VOC-layout set), torch datasets, transforms.

``open_dataset(config["dataset"])`` picks the reader from ``dataset.format`` through a registry
(``voc`` → :class:`VOCReader`, ``coco`` → :class:`COCOReader`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wsss_core.errors import ConfigError
from wsss_core.registry import Registry

# Defined before the reader modules are imported: they register themselves here.
DATASET_FORMATS: Registry[Any] = Registry("dataset format")

from wsss_core.data.coco import COCOReader  # noqa: E402
from wsss_core.data.voc import DatasetReader, VOCReader  # noqa: E402


def open_dataset(dataset_config: Mapping[str, Any]) -> DatasetReader:
    """The reader for one ``datasets.<name>`` config block; raises ConfigError/DatasetError naming
    the key or path at fault."""
    name = dataset_config.get("name", "?")
    if "format" not in dataset_config:
        raise ConfigError(f"datasets.{name}.format is missing; set it to one of: {', '.join(DATASET_FORMATS)}")
    dataset_format = dataset_config["format"]
    if dataset_format not in DATASET_FORMATS:
        raise ConfigError(
            f"datasets.{name}.format '{dataset_format}' is unknown; use one of: {', '.join(DATASET_FORMATS)}"
        )
    return DATASET_FORMATS.get(dataset_format).from_config(dataset_config)


__all__ = ["DATASET_FORMATS", "COCOReader", "DatasetReader", "VOCReader", "open_dataset"]
