"""The typed ``pretraining:`` section of config.yaml, on the project's one loader (``wsss_core.settings``):
the pool (:class:`~wsss_core.data.synth_pretrain.PoolParams`) and one recipe per backbone
(:class:`~wsss_core.pretraining.recipe.Recipe`, whose ``objective_args`` its objective's type checks:
``DinoSettings``, ``SupervisedSettings``). Checked when the workflow is parsed
(``workflow_checks.config_problem``): a misspelt key, a wrong type or an out-of-range value stops
``snakemake -n`` with one line naming the key path (``pretraining.backbones.vit_synth.epochs = 0: ...``).

Run-time keys (``wsss_core.runtime.OTHER_SECTIONS``: a recipe's ``log_every``) are not declared by the
types: ``runtime.check`` checks them, and they are removed before the types see a recipe (they still
count as known keys in a typo's message).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from wsss_core import runtime
from wsss_core.data.synth_pretrain import PoolParams
from wsss_core.pretraining.recipe import Recipe
from wsss_core.settings import Settings


class PretrainingSettings(Settings):
    """``pretraining:`` as a whole."""

    pool: PoolParams = PoolParams()
    backbones: dict[str, Recipe] = {}


def recipe_identity(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """A ``pretraining.backbones.<name>`` mapping less its run-time keys (what the job computes)."""
    return runtime.without_runtime(recipe, runtime.PRETRAINING_BACKBONE)


def _runtime_known(parts: Sequence[Any]) -> list[str]:
    return list(runtime.runtime_keys(".".join(["pretraining", *map(str, parts)])))


def check_pretraining(pretraining: Mapping[str, Any] | None) -> PretrainingSettings:
    """``pretraining:`` checked against :class:`PretrainingSettings` and every recipe's objective
    arguments against its objective's type; one ConfigError line naming the key otherwise."""
    pretraining = dict(pretraining or {})
    backbones = pretraining.get("backbones")
    if isinstance(backbones, Mapping):
        pretraining["backbones"] = {name: recipe_identity(recipe) if isinstance(recipe, Mapping) else recipe
                                    for name, recipe in backbones.items()}
    typed = PretrainingSettings.load(pretraining, "pretraining", also_known=_runtime_known)
    for name, recipe in typed.backbones.items():
        recipe.check_arguments(f"pretraining.backbones.{name}")
    return typed
