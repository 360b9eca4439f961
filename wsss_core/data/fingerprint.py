"""Fingerprint of an on-disk dataset, so that its contents are part of the Snakemake DAG.

The rules know a dataset already on disk only by its ``root``: fixing a corrupt image or adding an id to a
list file would leave every result stale. The fingerprint lists what a chain reads — every split list
file and the labels file (content hashes: they are small), and every listed image, mask and annotation
(size and mtime: no image is read) — and its digest is a parameter of rule ``dataset_fingerprint``, whose
output every stage that reads the dataset takes as an input. A changed file changes the digest, the rule
re-runs (logging what changed, :func:`describe_changes`) and so does everything downstream.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wsss_core.data import open_dataset
from wsss_core.errors import InputError

ABSENT = None


def _content(path: Path) -> str | None:
    """SHA-256 of a small file (list, labels), or None when it does not exist."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except FileNotFoundError:
        return ABSENT


def _stat(path: Path) -> list[int] | None:
    """``[size, mtime_ns]`` of a file, or None when it does not exist."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return ABSENT
    return [info.st_size, info.st_mtime_ns]


def fingerprint(dataset: Mapping[str, Any]) -> dict[str, Any]:
    """``{"files": {path relative to root: hash or [size, mtime_ns] or None}, "problems": [...], "digest"}``
    of a ``datasets.<name>`` block. A split that cannot be listed (missing list, missing image) is noted
    under ``problems`` (the stages report it properly); fixing it changes the digest."""
    reader = open_dataset(dataset)
    root = reader.root

    def key(path: Path) -> str:
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)

    files: dict[str, Any] = {}
    problems: list[str] = []
    if reader.cls_labels_path is not None:
        files[key(reader.cls_labels_path)] = _content(reader.cls_labels_path)
    for split in sorted(reader.splits):
        list_path = reader.list_path(split)
        files[key(list_path)] = _content(list_path)
        try:
            ids = reader.ids(split)
        except InputError as error:
            problems.append(f"{split}: {error}")
            continue
        for image_id in ids:
            for path in (reader.image_path(image_id), reader.mask_path(image_id)):
                files.setdefault(key(path), _stat(path))
            if reader.cls_labels_path is None:
                annotation = root / "Annotations" / f"{image_id}.xml"
                files.setdefault(key(annotation), _stat(annotation))
    payload = json.dumps({"files": files, "problems": problems}, sort_keys=True).encode()
    return {"files": files, "problems": problems, "digest": hashlib.sha256(payload).hexdigest()[:16]}


def describe_changes(previous: Mapping[str, Any], current: Mapping[str, Any], limit: int = 5) -> list[str]:
    """Human-readable differences between two fingerprints: files added, removed or changed (the first
    ``limit`` of each named), and problems that appeared or went away."""
    before, after = previous.get("files", {}), current.get("files", {})
    added = sorted(name for name in after if before.get(name) is ABSENT and after[name] is not ABSENT)
    removed = sorted(name for name in before if before[name] is not ABSENT and after.get(name) is ABSENT)
    changed = sorted(name for name in after if name in before and before[name] is not ABSENT
                     and after[name] is not ABSENT and before[name] != after[name])
    lines = []
    for what, names in (("changed", changed), ("added", added), ("removed", removed)):
        if names:
            shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
            lines.append(f"{len(names)} file{'s' if len(names) > 1 else ''} {what}: {shown}")
    for problem in sorted(set(current.get("problems", [])) - set(previous.get("problems", []))):
        lines.append(f"new problem: {problem}")
    for problem in sorted(set(previous.get("problems", [])) - set(current.get("problems", []))):
        lines.append(f"fixed: {problem}")
    return lines
