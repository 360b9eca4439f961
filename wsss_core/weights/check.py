"""``python -m wsss_core.weights check``: every ``weights.files`` key checked before the GPU hour.

For each key: the file exists; its SHA-256 matches what is known (``weights.sha256.<key>`` pinned in
config.yaml, else the publisher's prefix when the file has the published name); and it loads into its
backbone through the verified path of :mod:`wsss_core.models.backbones` (every backbone tensor taken
from the file). A missing file gets the command or URL that provides it; a path under ``results/`` is
built by the workflow itself (``snakemake <path>``), not downloaded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from torch import nn

from wsss_core.errors import InputError, summarize
from wsss_core.models.backbones import BACKBONES, create_backbone
from wsss_core.models.resnet38 import create_resnet38
from wsss_core.models.weights import PretrainedWeights
from wsss_core.weights.manifest import MANIFEST, WeightEntry

# Loaders that are not in the backbone registry (ResNet-38 is built by its own module).
LOADERS: dict[str, Callable[[PretrainedWeights], nn.Module]] = {"resnet38": lambda weights: create_resnet38(weights)}
WORKFLOW_OUTPUTS = "results"


@dataclass(frozen=True)
class KeyReport:
    """The verdict on one key: ok, missing, corrupt, unloadable, to_build (a workflow output not built yet),
    unset (``null``) or unverified (present, but no backbone is known to load it into)."""

    key: str
    path: str | None
    status: str
    lines: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def sha256sum(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def is_workflow_output(path: str) -> bool:
    """A path the workflow writes (``results/...``), e.g. the synthetic pretrained stand-ins."""
    parts = PurePosixPath(Path(path).as_posix()).parts
    return bool(parts) and parts[0] == WORKFLOW_OUTPUTS


def how_to_get(key: str, path: str, entry: WeightEntry | None) -> str:
    if is_workflow_output(path):
        return f"built by the workflow: run `snakemake --cores 2 {path}`"
    if entry is None:
        return f"no manifest entry for '{key}': put the file at {path} or fix weights.files.{key}"
    source = f"download {entry.url}"
    if entry.timm_tag:
        source += (f" (or: python -c \"import timm; timm.create_model('{entry.timm_tag}', pretrained=True)\" and copy "
                   "the file from the Hugging Face cache)")
    return f"{source} and save it as {path}"


def backbone_for(key: str, path: str, entry: WeightEntry | None) -> str | None:
    """The loader that verifies a file: the manifest's, else a workflow output named after its backbone."""
    if entry is not None:
        return entry.backbone
    stem = Path(path).stem
    return stem if stem in BACKBONES or stem in LOADERS else None


def load_into_backbone(backbone: str, key: str, path: Path) -> nn.Module:
    """Build ``backbone`` with the file through the verified loading path (raises InputError on a misfit)."""
    weights = PretrainedWeights(key, path, False)
    if backbone in LOADERS:
        return LOADERS[backbone](weights)
    return create_backbone(backbone, weights)


def check_key(key: str, value: str | None, pinned: str | None, manifest: Mapping[str, WeightEntry],
              load: bool = True) -> KeyReport:
    entry = manifest.get(key)
    if value in (None, ""):
        return KeyReport(key, None, "unset", (f"weights.files.{key} is null: the method runs with random init "
                                              "or the hub (weights.use_hub)",))
    path = Path(value)
    if not path.is_file():
        return KeyReport(key, value, "to_build" if is_workflow_output(value) else "missing",
                         (f"'{value}' does not exist: {how_to_get(key, value, entry)}",))
    lines = []
    status = "ok"
    digest = sha256sum(path)
    if pinned:
        if digest != pinned.lower():
            status = "corrupt"
            lines.append(f"sha256 {digest} differs from weights.sha256.{key} = {pinned}: the file changed or is "
                         f"truncated; {how_to_get(key, value, entry)}")
        else:
            lines.append(f"sha256 matches weights.sha256.{key}")
    elif entry is not None and entry.sha256_prefix and path.name == entry.published_file:
        if not digest.startswith(entry.sha256_prefix):
            status = "corrupt"
            lines.append(f"sha256 {digest[:16]}... does not start with the published {entry.sha256_prefix} "
                         f"({entry.hash_source}); {how_to_get(key, value, entry)}")
        else:
            lines.append(f"sha256 starts with the published {entry.sha256_prefix} ({entry.hash_source})")
    else:
        reason = entry.hash_source if entry is not None else "not in the manifest"
        lines.append(f"no published hash ({reason}); pin this one with weights.sha256.{key}: {digest}")
    backbone = backbone_for(key, value, entry)
    if load and backbone is None:
        status = "unverified" if status == "ok" else status
        lines.append(f"not loaded: no backbone is known for '{key}' (add it to wsss_core/weights/manifest.py)")
    elif load:
        try:
            load_into_backbone(backbone, key, path)
            lines.append(f"loads into {backbone}: every backbone tensor comes from the file")
        except InputError as error:
            status = "unloadable" if status == "ok" else status
            lines.append(f"does not load into {backbone}: {error}")
        except Exception as error:  # a file no loader can parse (truncated, HTML page) is reported, not raised
            status = "unloadable" if status == "ok" else status
            lines.append(f"does not load into {backbone}: {summarize(error)}")
    return KeyReport(key, value, status, tuple(lines))


def check_weights(weights: Mapping[str, Any], manifest: Mapping[str, WeightEntry] = MANIFEST, load: bool = True,
                  keys: list[str] | None = None) -> list[KeyReport]:
    """One report per ``weights.files`` key (or per ``keys``), in config order."""
    files = dict(weights.get("files") or {})
    pinned = dict(weights.get("sha256") or {})
    unknown = sorted(set(keys or []) - set(files))
    if unknown:
        raise InputError(f"--keys names {unknown}, which are not under weights.files (known: {', '.join(files)})")
    return [check_key(key, files[key], pinned.get(key), manifest, load) for key in (keys or list(files))]


def render(reports: list[KeyReport]) -> str:
    width = max((len(report.key) for report in reports), default=0)
    lines = []
    for report in reports:
        lines.append(f"{report.status.upper():10s} {report.key:{width}s}  {report.path or '-'}")
        lines += [f"{'':10s} {'':{width}s}  {line}" for line in report.lines]
    failed = [report.key for report in reports if report.status in ("missing", "corrupt", "unloadable")]
    built = [report.key for report in reports if report.status == "to_build"]
    summary = f"{sum(report.ok for report in reports)} of {len(reports)} ok"
    if failed:
        summary += f"; to fix: {', '.join(failed)}"
    if built:
        summary += f"; built by the workflow when needed: {', '.join(built)}"
    unverified = [report.key for report in reports if report.status == "unverified"]
    if unverified:
        summary += f"; present but not loaded (no known backbone): {', '.join(unverified)}"
    return "\n".join(lines + [summary])


def render_manifest(manifest: Mapping[str, WeightEntry] = MANIFEST) -> str:
    """The manifest as a Markdown table (README)."""
    rows = ["| key | what | timm tag | source | published SHA-256 |", "|:---|:---|:---|:---|:---|"]
    for entry in manifest.values():
        digest = f"`{entry.sha256_prefix}…` of {entry.published_file}" if entry.sha256_prefix else f"none ({entry.hash_source})"
        rows.append(f"| {entry.key} | {entry.what} | {entry.timm_tag or '–'} | {entry.url} | {digest} |")
    return "\n".join(rows)
