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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import wsss_core
from wsss_core import runtime

PACKAGE_ROOT = Path(wsss_core.__file__).resolve().parent
PACKAGE_NAME = "wsss_core"


def _module_path(module: str) -> Path | None:
    """File of a ``wsss_core`` module or package, or None when it is not part of the package."""
    if module != PACKAGE_NAME and not module.startswith(PACKAGE_NAME + "."):
        return None
    if module == PACKAGE_NAME:
        return PACKAGE_ROOT / "__init__.py"
    relative = Path(*module.split(".")[1:])
    as_file = PACKAGE_ROOT / relative.with_suffix(".py")
    if as_file.is_file():
        return as_file
    as_package = PACKAGE_ROOT / relative / "__init__.py"
    if as_package.is_file():
        return as_package
    return None


# Each file is parsed and walked once per process: every rule's fingerprint walks the same modules, and
# parsing them again for each was most of a dry run's time. (Like ``code_fingerprint`` below, this assumes
# the sources do not change while one process runs.)
@functools.lru_cache(maxsize=None)
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


@functools.lru_cache(maxsize=None)
def _imported_modules(path: Path, module: str) -> frozenset[str]:
    """Names of ``wsss_core`` modules that ``path`` imports (statically), including whole subpackages
    it imports from, so that registries discovered with ``pkgutil`` are covered."""
    is_package = path.name == "__init__.py"
    package_parts = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(_tree(path)):
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
    return frozenset(name for name in found if _module_path(name) is not None)


@functools.lru_cache(maxsize=None)
def _registry_packages(path: Path) -> frozenset[str]:
    """Packages whose members a module imports dynamically: ``Registry(..., package="wsss_core.x")``."""
    found = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name == "Registry":
                for keyword in node.keywords:
                    if keyword.arg == "package" and isinstance(keyword.value, ast.Constant):
                        found.add(str(keyword.value.value))
    return frozenset(found)


def _package_members(package: str) -> set[str]:
    """All modules of a package (a registry imports them all to run their decorators)."""
    path = _module_path(package)
    if path is None or path.name != "__init__.py":
        return set()
    return {f"{package}.{child.stem}" for child in path.parent.glob("*.py") if child.name != "__init__.py"}


@functools.lru_cache(maxsize=None)
def module_closure(module: str, isolated: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """``module`` and every ``wsss_core`` module it reaches through imports, sorted.

    Parent packages count (importing a module runs its package's ``__init__``), and a registry that
    imports all members of a package pulls them all in; packages named in ``isolated`` are not expanded
    that way, so that e.g. a stage's fingerprint can cover one method only.
    """
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
        for package in _registry_packages(path) - isolated:
            pending.extend(_package_members(package) - seen)
        if "." in name:
            pending.append(name.rsplit(".", 1)[0])
    return tuple(sorted(seen))


@functools.lru_cache(maxsize=None)
def code_fingerprint(module: str, method_module: str | None = None) -> str:
    """Short SHA-256 over the sources of ``module`` and everything it imports from ``wsss_core``.

    With ``method_module``, the ``wsss_core.methods`` registry is not expanded: the fingerprint covers
    the stage plus that one method, so editing one method re-runs only that method's jobs.
    """
    if method_module is None:
        names = set(module_closure(module))
    else:
        isolated = frozenset({"wsss_core.methods"})
        names = set(module_closure(module, isolated)) | set(module_closure(method_module, isolated))
    digest = hashlib.sha256()
    for name in sorted(names):
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
    """What made an artefact: the stage, its configuration (its identity: run-time settings such as
    ``num_workers`` or ``device`` left out, :func:`wsss_core.runtime.identity`), and the code version."""
    if isinstance(config, Mapping):
        config = runtime.identity(config)
    return {
        "stage": stage_module,
        "wsss_core_version": wsss_core.__version__,
        "git_commit": git_commit(),
        "code_fingerprint": code_fingerprint(stage_module),
        "config_hash": config_hash(config),
        "config": config,
    }
