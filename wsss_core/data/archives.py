"""The official dataset archives: what each one is, its published checksum, and safe extraction.

A preparation stage names every archive by its role (``voc2012``, ``sbd``, ``coco_train2014``, ...), which
is also its key under ``datasets.<name>.prepare.archives`` in config.yaml, so a missing, truncated or
wrong file stops with one line naming the file, the archive it should be and the config key to fix.

Checksums: torchvision lists MD5s for the VOC 2012 tar and SBD's ``benchmark.tgz``
(``torchvision/datasets/voc.py`` and ``sbd.py``); COCO publishes none for its 2014 zips, so those are
checked by their content (the images and annotation files they must hold) and counted instead.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from wsss_core.errors import ConfigError, DatasetError


@dataclass(frozen=True)
class ArchiveSpec:
    """One official archive."""

    role: str  # key under datasets.<name>.prepare.archives
    filename: str
    url: str
    md5: str | None  # published checksum (None: the publisher gives none)
    md5_source: str  # where the checksum (or its absence) comes from


ARCHIVES: dict[str, ArchiveSpec] = {
    spec.role: spec
    for spec in (
        ArchiveSpec("voc2012", "VOCtrainval_11-May-2012.tar",
                    "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
                    "6cd6e144f989b92b3379bac3b3de84fd", "torchvision.datasets.voc DATASET_YEAR_DICT['2012']"),
        ArchiveSpec("sbd", "benchmark.tgz",
                    "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
                    "82b4d87ceb2ed10f6038a1cba92111cb", "torchvision.datasets.sbd SBDataset.md5"),
        ArchiveSpec("coco_train2014", "train2014.zip", "http://images.cocodataset.org/zips/train2014.zip",
                    None, "cocodataset.org publishes no checksum"),
        ArchiveSpec("coco_val2014", "val2014.zip", "http://images.cocodataset.org/zips/val2014.zip",
                    None, "cocodataset.org publishes no checksum"),
        ArchiveSpec("coco_annotations", "annotations_trainval2014.zip",
                    "http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
                    None, "cocodataset.org publishes no checksum"),
    )
}


# The archives each dataset format is prepared from (datasets.<name>.prepare.archives.<role>).
FORMAT_ARCHIVES: dict[str, tuple[str, ...]] = {
    "voc": ("voc2012", "sbd"),
    "coco": ("coco_train2014", "coco_val2014", "coco_annotations"),
}


def prepare_settings(dataset: Mapping[str, Any]) -> dict[str, Any]:
    """``dataset.prepare`` with its defaults, or a one-line error naming the key."""
    name = dataset.get("name", "?")
    prepare = dataset.get("prepare")
    if not isinstance(prepare, Mapping) or not isinstance(prepare.get("archives"), Mapping):
        raise ConfigError(f"datasets.{name}.prepare.archives is missing: give the paths of the downloaded archives")
    return {"archives": prepare["archives"], "verify_checksums": bool(prepare.get("verify_checksums", True)),
            "expect": dict(prepare.get("expect") or {})}


def md5sum(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def config_key(dataset: str, role: str) -> str:
    return f"datasets.{dataset}.prepare.archives.{role}"


def check_archive(path: str | Path | None, role: str, dataset: str, verify_checksum: bool) -> dict[str, str | None]:
    """Stop with one line when the archive of ``role`` is missing or its checksum differs; returns
    ``{path, md5, checked}`` for the preparation manifest."""
    spec = ARCHIVES[role]
    key = config_key(dataset, role)
    if path in (None, ""):
        raise DatasetError(f"archive {spec.filename} ({role}) is not configured: set {key} to its path (download: {spec.url})")
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"archive {spec.filename} ({role}) not found at '{path}': download it from {spec.url} "
                           f"or set {key} to where it is")
    if not verify_checksum or spec.md5 is None:
        return {"path": str(path), "md5": None, "checked": "no published checksum" if spec.md5 is None else "skipped"}
    actual = md5sum(path)
    if actual != spec.md5:
        raise DatasetError(
            f"archive '{path}' ({key}) has MD5 {actual}, not the published {spec.md5} of {spec.filename} "
            f"({spec.md5_source}): re-download it from {spec.url}"
        )
    return {"path": str(path), "md5": actual, "checked": "published md5 matches"}


def _target(destination: Path, member: str, prefix: str) -> Path | None:
    """Where an archive member under ``prefix`` goes (``prefix`` stripped), or None if outside it;
    absolute paths and ``..`` never leave ``destination``."""
    parts = PurePosixPath(member).parts
    prefix_parts = PurePosixPath(prefix).parts if prefix else ()
    if tuple(parts[:len(prefix_parts)]) != prefix_parts or len(parts) == len(prefix_parts):
        return None
    relative = parts[len(prefix_parts):]
    if any(part in ("..", "") or part.startswith("/") for part in relative):
        raise DatasetError(f"archive member '{member}' leaves the extraction folder; the archive is not an official one")
    return destination.joinpath(*relative)


def extract(archive: Path, destination: Path, prefix: str, keep: Callable[[str], bool] = lambda name: True,
            role: str = "", dataset: str = "") -> int:
    """Extract the regular files under ``prefix`` (a folder inside the archive, stripped) whose
    remaining path passes ``keep``; returns how many files were written. tar, tgz and zip."""
    count = 0
    for name, opener in members(archive, role, dataset):
        target = _target(destination, name, prefix)
        if target is None or not keep(target.relative_to(destination).as_posix()):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with opener() as source, open(target, "wb") as sink:
            shutil.copyfileobj(source, sink)
        count += 1
    return count


def members(archive: Path, role: str, dataset: str) -> Iterator[tuple[str, Callable]]:
    """``(member name, opener)`` of every regular file of a tar(.gz) or zip archive."""
    key = config_key(dataset, role) if role else str(archive)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                for info in bundle.infolist():
                    if not info.is_dir():
                        yield info.filename, (lambda info=info: bundle.open(info))
            return
        with tarfile.open(archive) as bundle:
            for info in bundle:
                if info.isfile():
                    yield info.name, (lambda info=info: bundle.extractfile(info))
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as error:
        reason = "; ".join(line.strip(" -") for line in str(error).splitlines() if line.strip(" -"))
        raise DatasetError(f"archive '{archive}' ({key}) cannot be read ({reason}): it is truncated or not the "
                           "expected archive; re-download it") from None
