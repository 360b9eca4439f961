"""Helpers shared by the stages: their configuration, the dataset reader, the stores they check, and
the provenance of the artefacts they credit."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import wsss_core.data
from wsss_core.errors import ConfigError, StoreError
from wsss_core.settings import Settings

LOG = logging.getLogger(__name__)
S = TypeVar("S", bound=Settings)


def stage_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``stage`` mapping of a stage configuration (``{}`` when absent)."""
    stage = config.get("stage") or {}
    if not isinstance(stage, Mapping):
        raise ConfigError(f"'stage' must be a mapping of stage parameters, got {type(stage).__name__}")
    return dict(stage)


def section_settings(stage: Mapping[str, Any], settings_type: type[S], where: str = "stage") -> S:
    """The keys of ``stage`` that ``settings_type`` (``wsss_core.stages.settings``) declares, as that type:
    its defaults are the only ones (the keys a rule adds beside them, ``split``, ``processes``, ... are
    read apart; unknown keys were refused when the workflow was parsed)."""
    return settings_type.load({key: value for key, value in stage.items() if key in settings_type.model_fields}, where)


def open_reader(config: Mapping[str, Any]) -> Any:
    """The dataset reader for ``config["dataset"]``."""
    if "dataset" not in config:
        raise ConfigError("the stage configuration has no 'dataset' key; the rule must pass it")
    return wsss_core.data.open_dataset(config["dataset"])


def expected_method(config: Mapping[str, Any]) -> str | None:
    """The method named in the configuration, or None for stages run without one."""
    method = config.get("method") or {}
    return method.get("name") if isinstance(method, Mapping) else None


def read_provenance(path: str | Path) -> dict[str, Any] | None:
    """The ``provenance`` recorded in an artefact (JSON key, HDF5 attribute or checkpoint field)."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"--sources: {path} does not exist; pass the artefacts this evaluation depends on")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return json.loads(path.read_text()).get("provenance")
    if suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r", locking=False) as handle:
            value = handle.attrs.get("provenance")
        return json.loads(value) if value is not None else None
    if suffix in (".pt", ".pth"):
        import torch

        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a checkpoint holding objects weights_only refuses
            LOG.warning("cannot read provenance from %s (%s)", path, error)
            return None
        return checkpoint.get("provenance") if isinstance(checkpoint, Mapping) else None
    return None


def source_record(path: str | Path) -> dict[str, Any]:
    """Path of an artefact plus who made it (stage, config hash, code fingerprint, git commit)."""
    found = read_provenance(path) or {}
    return {
        "path": str(path),
        **{key: found.get(key) for key in ("stage", "config_hash", "code_fingerprint", "git_commit")},
    }


def missing_ids(store: Any, ids: Sequence[str], what: str) -> None:
    """StoreError when ``store`` lacks some of the split's ``ids``."""
    missing = [image_id for image_id in ids if image_id not in store]
    if missing:
        raise StoreError(
            f"{what} {store.path} lacks {len(missing)} of the {len(ids)} images of the split "
            f"(first: {', '.join(missing[:3])}); re-run the stage that writes it for this split"
        )


SCORED_ROLES = ("score", "evaluate")  # splits whose ground-truth masks a chain reads


def check_chain_splits(reader: Any, dataset: Mapping[str, Any], train_split: str) -> None:
    """Check every split the chain reads (``train_split`` and ``datasets.<name>.roles``) before the first
    training step, from image headers: an empty list, a missing image or mask, a truncated JPEG, missing
    labels, a mask of another size than its image or out-of-range values stop now with the file and the
    fix, not after hours of training at the stage that first reads them."""
    roles = dict(dataset.get("roles") or {})
    roles["train"] = train_split
    with_masks: dict[str, bool] = {}
    for role, split in roles.items():
        with_masks[split] = with_masks.get(split, False) or role in SCORED_ROLES
    started = time.perf_counter()
    counts = {split: reader.check_split_headers(split, masks=masks) for split, masks in with_masks.items()}
    LOG.info(
        "checked the chain's splits (%s) in %.1f s",
        ", ".join(f"{split}: {count} images{' + masks' if with_masks[split] else ''}"
                  for split, count in counts.items()),
        time.perf_counter() - started,
    )
