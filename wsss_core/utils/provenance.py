"""Provenance: which code and which configuration made an artefact.

Every stage stores ``provenance(config, stage_module)`` next to what it writes (HDF5 attributes, a
``provenance`` key in JSON, a field in checkpoints).  The Snakemake rules pass
``code_fingerprint(stage_module)`` as a rule parameter, so editing a stage's code, or any
``wsss_core`` module it imports, re-runs that stage and everything downstream of it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import wsss_core

PACKAGE_ROOT = Path(wsss_core.__file__).resolve().parent
PACKAGE_NAME = "wsss_core"


def _module_path(module: str) -> Path | None:
    """File of a ``wsss_core`` module or package, or None when it is not part of the package."""
    if module != PACKAGE_NAME and not module.startswith(PACKAGE_NAME + "."):
        return None
    relative = Path(*module.split(".")[1:])
    as_file = PACKAGE_ROOT / relative.with_suffix(".py")
    if as_file.is_file():
        return as_file
    as_package = PACKAGE_ROOT / relative / "__init__.py"
    if as_package.is_file():
        return as_package
    return None


def _imported_modules(path: Path, module: str) -> set[str]:
    """Names of ``wsss_core`` modules that ``path`` imports (statically), including whole subpackages
    it imports from, so that registries discovered with ``pkgutil`` are covered."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    package_parts = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package_parts[: len(package_parts) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if _module_path(name) is not None}


def _package_members(module: str) -> set[str]:
    """All modules inside a subpackage (registries import their members dynamically)."""
    path = _module_path(module)
    if path is None or path.name != "__init__.py":
        return set()
    members = set()
    for child in path.parent.glob("*.py"):
        if child.name != "__init__.py":
            members.add(f"{module}.{child.stem}")
    return members


@functools.lru_cache(maxsize=None)
def module_closure(module: str) -> tuple[str, ...]:
    """``module`` and every ``wsss_core`` module it reaches through imports, sorted."""
    seen: set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        path = _module_path(name)
        if path is None:
            continue
        seen.add(name)
        pending.extend(_imported_modules(path, name) - seen)
        pending.extend(_package_members(name) - seen)
        parent = name.rsplit(".", 1)[0]
        if parent != name and parent not in seen:
            pending.append(parent)
    return tuple(sorted(seen))


@functools.lru_cache(maxsize=None)
def code_fingerprint(module: str) -> str:
    """Short SHA-256 over the sources of ``module`` and everything it imports from ``wsss_core``."""
    digest = hashlib.sha256()
    for name in module_closure(module):
        path = _module_path(name)
        assert path is not None
        digest.update(name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The git commit of the checkout (with ``-dirty`` when it has changes), or ``unknown``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PACKAGE_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PACKAGE_ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def config_hash(config: Any) -> str:
    """Stable short hash of a JSON-serialisable configuration."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def provenance(config: Any, stage_module: str) -> dict[str, Any]:
    """What made an artefact: the stage, its configuration, and the code version."""
    return {
        "stage": stage_module,
        "wsss_core_version": wsss_core.__version__,
        "git_commit": git_commit(),
        "code_fingerprint": code_fingerprint(stage_module),
        "config_hash": config_hash(config),
        "config": config,
    }
