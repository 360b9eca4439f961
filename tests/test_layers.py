"""The package's layers, read from the import statements (ast: nothing is imported).

From the bottom up: the shared machinery (``training/``, ``io/``, ``evaluation/``, ``refine/``,
``segmentation/``, ``losses/``, ``pretraining/``, ``single_stage/``, ``models/``, ``data/``, ``weights/``,
``utils/``) knows nothing of the methods or the stages (``SeedMaps`` and ``TrainingProgress`` are imported
from ``io/`` and ``training/``, not through ``methods``); the methods know nothing of the stages; every
loss function lives in ``losses/`` (one module per method family). A lower layer that needed
a method would put every method's code into its code fingerprint and an import cycle one edit away.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "wsss_core"
LOWER_LAYERS = ("training", "io", "evaluation", "refine", "segmentation", "losses", "pretraining", "single_stage",
                "models", "data", "weights", "utils")


def imported_modules(source: str, module: str) -> set[str]:
    """Absolute names of what the module ``module`` (dotted) imports, at any depth of its code:
    ``import a.b`` gives ``a.b``; ``from a import b`` gives ``a`` and ``a.b``; relative imports are
    resolved against the module's package."""
    package = module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def module_imports(path: Path) -> set[str]:
    """``imported_modules`` of a file of the package."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return imported_modules(path.read_text(), module)


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def files_of(package: str) -> list[Path]:
    return sorted((PACKAGE / package).rglob("*.py"))


def test_imported_modules_sees_every_import_form() -> None:
    """The checker can fail: each way of reaching a method or a stage is seen."""
    source = (
        "import wsss_core.methods.toco\n"
        "from wsss_core.stages import export_seeds\n"
        "from ..methods import base\n"
        "def later():\n"
        "    from wsss_core.methods.afa import AFA\n"
    )
    found = imported_modules(source, "wsss_core.refine.probe")
    assert {
        "wsss_core.methods.toco", "wsss_core.stages.export_seeds", "wsss_core.methods.base",
        "wsss_core.methods.afa",
    } <= found


@pytest.mark.parametrize("layer", LOWER_LAYERS)
def test_lower_layers_import_no_method_and_no_stage(layer: str) -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            name for name in module_imports(path)
            if within(name, "wsss_core.methods") or within(name, "wsss_core.stages")
        )
        for path in files_of(layer)
    }
    assert not {path: names for path, names in offenders.items() if names}


def test_losses_is_a_lower_layer() -> None:
    """The parametrised check above covers ``losses/`` (and it has modules to check)."""
    assert "losses" in LOWER_LAYERS
    assert len(files_of("losses")) > 2


# Packages whose loss functions have moved to ``losses/`` (DeepLab's from ``stages/train_segmentation.py``
# too); ``reporting/`` is left out: ``_plot_losses`` draws loss curves.
LOSS_FREE = ("methods", "refine", "pretraining", "single_stage", "models", "training", "io", "evaluation", "data",
             "segmentation", "stages")


def module_level_losses(source: str) -> list[str]:
    """Names of the module-level functions of ``source`` that are losses by name (``*_loss``, ``*_losses``,
    ``*_loss_terms``); methods of a class are not module-level."""
    tree = ast.parse(source)
    return sorted(
        node.name for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.endswith(("_loss", "_losses", "_loss_terms"))
    )


def test_module_level_losses_sees_a_loss_and_skips_methods() -> None:
    source = "def gsc_loss(a):\n    pass\nclass A:\n    def classification_loss(self):\n        pass\n"
    assert module_level_losses(source) == ["gsc_loss"]


def test_loss_functions_live_in_losses() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): names
        for package in LOSS_FREE for path in files_of(package)
        if (names := module_level_losses(path.read_text()))
    }
    assert not offenders


def test_the_stage_settings_import_no_heavy_dependency() -> None:
    """Parsing the workflow checks ``stages:`` with ``wsss_core.stages.settings`` (and the refinements' and
    networks' types it uses): it must not import the compiled CRF, HDF5 or plotting; and the CRF worker
    processes of refine_crf unpickle ``CRFParams`` without torch."""
    import subprocess
    import sys

    probe = ("import sys, wsss_core.refine.settings; light = 'torch' not in sys.modules; "
             "import wsss_core.stages.settings; "
             "print(light, sorted(m for m in ('pydensecrf', 'h5py', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=PACKAGE.parent, env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"})
    assert result.stdout.split() == ["True", "[]"], result.stdout + result.stderr


def test_methods_import_no_stage() -> None:
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(n for n in module_imports(path) if within(n, "wsss_core.stages"))
        for path in files_of("methods")
    }
    assert not {path: names for path, names in offenders.items() if names}


# A method module may import ``methods.base`` and, besides, only the module of the method it extends
# (a subclass of that method's ``Method`` and network): MCC is ToCo with masked views (``MCC(ToCo)``,
# ``ToCoNetwork``); ECA is AFA with class-aware affinity (``ECA(AFA)``, ``ECANetwork(AFANetwork)``).
# Anything else two methods share lives below them: augmentations in ``data/``, losses in ``losses/``,
# CAM routines in ``models/`` or ``single_stage/``.
EXTENDS = {"mcc": "toco", "eca": "afa"}


def method_imports(path: Path) -> set[str]:
    """The other method modules ``path`` (a module of ``methods/``) imports, by short name."""
    own = path.stem
    return {
        name.split(".")[2] for name in module_imports(path)
        if within(name, "wsss_core.methods") and name.count(".") >= 2
        and name.split(".")[2] not in {own, "base"} and (PACKAGE / "methods" / f"{name.split('.')[2]}.py").exists()
    }


def test_a_method_imports_no_other_method_but_the_one_it_extends() -> None:
    offenders = {}
    for path in files_of("methods"):
        allowed = {EXTENDS[path.stem]} if path.stem in EXTENDS else set()
        if extra := method_imports(path) - allowed:
            offenders[path.name] = sorted(extra)
    assert not offenders


@pytest.mark.parametrize(("method", "base"), sorted(EXTENDS.items()))
def test_each_allowed_import_is_a_real_extension(method: str, base: str) -> None:
    """The exception above stays honest: the method's class derives from the base method's class."""
    from wsss_core.methods.base import METHODS

    assert issubclass(METHODS.get(method), METHODS.get(base))


def test_the_shared_types_are_imported_from_their_own_modules() -> None:
    """``SeedMaps`` (``io/seed_maps.py``) and ``TrainingProgress`` (``training/progress.py``) are not re-exported
    by ``methods``: every module (the methods' too) imports them from where they are defined."""
    offenders = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        for name in module_imports(path)
        if name in ("wsss_core.methods.SeedMaps", "wsss_core.methods.TrainingProgress",
                    "wsss_core.methods.base.SeedMaps", "wsss_core.methods.base.TrainingProgress")
    )
    assert not offenders, offenders
