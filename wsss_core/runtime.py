"""Run-time settings: how a job runs, as opposed to what it computes.

A job's identity (the ``--config`` JSON of a rule, Snakemake's ``params`` rerun trigger, the resume key
of a training stage and the ``config_hash`` of its provenance) holds only what changes its result. The
settings declared here change only how the job runs — worker processes, the device, logging and
checkpoint cadence, prefetching, pinned memory, a decoded-image cache — so they travel in a second JSON,
``--runtime``, which the rules put in the shell command (not in ``params``): changing one re-runs nothing,
and a killed training job resumes from its checkpoint with new values.

* :data:`TOP_LEVEL`: config.yaml's top-level run-time keys (and ``threads``, which callers may add).
* :data:`SECTIONS`: per config section (a path under ``stages``, ``*`` = any name), its run-time keys;
  ``identity`` lists the section's other keys where the section is fully known, so that a misspelt key
  there stops too.
* :data:`OTHER_SECTIONS`: the same for sections outside ``stages``, by their full config path
  (``pretraining.backbones.*``: a backbone's pretraining recipe); their typo check is their settings
  type's (``pretraining.settings``).

The workflow (``workflow/rules/config.smk``) builds the ``--runtime`` JSON with :func:`workflow_runtime`
once, at parse time, after :func:`check` has rejected unknown keys, wrong values and dataset presets that
set a run-time key (a run-time value is one value for every dataset: it is not resolved per job). A stage
gets its section with ``--runtime-section`` (:func:`attach`, called by ``stages._cli``), reads the values
through :func:`settings` and hashes :func:`identity`.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wsss_core.errors import ConfigError

RUNTIME_KEY = "runtime"  # where a stage's configuration holds its run-time values
PRESETS_KEY = "presets"


@dataclass(frozen=True)
class Setting:
    """One run-time key: what it accepts (``allowed``, said in the error) and the check of a value;
    ``text``: whether a string is read as YAML would read it (Snakemake's ``--config key={...}`` gives
    nested values as strings: ``log_every: '3'``)."""

    allowed: str
    accepts: Callable[[Any], bool]
    text: bool = True

    def parse(self, value: Any) -> Any:
        """The value to use (``'3'`` → 3, ``'null'`` → None, ``'false'`` → False for a ``text``
        setting); ValueError when it is not allowed."""
        if self.text and isinstance(value, str):
            word = value.strip().lower()
            if word in ("null", "~", "none"):
                value = None
            elif word in ("true", "false"):
                value = word == "true"
            elif re.fullmatch(r"[+-]?[0-9]+", word):
                value = int(word)
        if not self.accepts(value):
            raise ValueError(value)
        return value


def _integer(minimum: int, none: bool = False) -> Callable[[Any], bool]:
    def accepts(value: Any) -> bool:
        if value is None:
            return none
        return isinstance(value, int) and not isinstance(value, bool) and value >= minimum

    return accepts


DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")

NUM_WORKERS = Setting("an integer >= 0", _integer(0))
DEVICE = Setting("auto, cpu, cuda or cuda:N", lambda value: isinstance(value, str) and bool(DEVICE_PATTERN.match(value)),
                 text=False)
THREADS = Setting("an integer >= 1 or null", _integer(1, none=True))
LOG_EVERY = Setting("an integer >= 1", _integer(1))
CHECKPOINT_EVERY = Setting("an integer >= 0 (0 = at epoch ends only)", _integer(0))
PIN_MEMORY = Setting("true, false or null (null = on for CUDA)", lambda value: value is None or isinstance(value, bool))
PREFETCH_FACTOR = Setting("an integer >= 1 or null", _integer(1, none=True))
IMAGE_CACHE = Setting("null, true, false or a folder path",
                      lambda value: value is None or isinstance(value, bool) or (isinstance(value, str) and value != ""))

# config.yaml's top level (``threads`` is not a config.yaml key: the benchmarks pass it to the stages)
TOP_LEVEL: dict[str, Setting] = {"num_workers": NUM_WORKERS, "device": DEVICE, "threads": THREADS}


@dataclass(frozen=True)
class Section:
    """The run-time keys of one config section; ``identity``: its other keys, where they are all known
    (then any other key is a typo), else None."""

    runtime: Mapping[str, Setting]
    identity: tuple[str, ...] | None = None


# stages.<path>: the run-time keys the stage reading that section uses (a DataLoader's workers and memory,
# the device, log and checkpoint cadence, the decoded-image cache). precision and channels_last stay in
# the identity: they change the arithmetic, hence the result.
SECTIONS: dict[str, Section] = {
    "train_method": Section(
        {"log_every": LOG_EVERY, "checkpoint_every": CHECKPOINT_EVERY, "pin_memory": PIN_MEMORY,
         "prefetch_factor": PREFETCH_FACTOR, "image_cache": IMAGE_CACHE},
        identity=("precision", "channels_last"),
    ),
    "export_seeds": Section({}, identity=("precision",)),
    "refine.*.train": Section(
        {"log_every": LOG_EVERY, "checkpoint_every": CHECKPOINT_EVERY, "num_workers": NUM_WORKERS, "device": DEVICE},
    ),
    "segmentation.*.train": Section(
        {"log_every": LOG_EVERY, "checkpoint_every": CHECKPOINT_EVERY, "pin_memory": PIN_MEMORY,
         "prefetch_factor": PREFETCH_FACTOR, "num_workers": NUM_WORKERS, "device": DEVICE},
    ),
    "segmentation.*.inference": Section({"device": DEVICE}),
}


# Sections outside ``stages``, by full config path; a job of one passes that path (the ``*`` filled in) as
# its ``--runtime-section``.
PRETRAINING_BACKBONE = "pretraining.backbones.*"
OTHER_SECTIONS: dict[str, Section] = {
    PRETRAINING_BACKBONE: Section({"log_every": LOG_EVERY}),
}


def _matching(sections: Mapping[str, Section], path: str) -> Section | None:
    for pattern, section in sections.items():
        if fnmatch.fnmatchcase(path, pattern) and path.count(".") == pattern.count("."):
            return section
    return None


def section_of(path: str) -> Section | None:
    """The declared section a concrete path (``segmentation.deeplab_v2.train`` under ``stages``, or
    ``pretraining.backbones.vit_synth``) belongs to."""
    return _matching(SECTIONS, path) or _matching(OTHER_SECTIONS, path)


def _runtime_keys(path: str | None) -> Mapping[str, Setting]:
    section = section_of(path) if path else None
    return section.runtime if section else {}


runtime_keys = _runtime_keys  # the run-time keys of a stages path (``segmentation.deeplab_v2.train``)


# ------------------------------------------------------------------------------ the workflow side
def _check_value(where: str, setting: Setting, value: Any) -> Any:
    """``value`` parsed (:meth:`Setting.parse`), or a ConfigError naming ``where``."""
    try:
        return setting.parse(value)
    except ValueError:
        raise ConfigError(f"{where} is {_shown(setting, value)}; a run-time setting "
                          f"that must be {setting.allowed}") from None


def _shown(setting: Setting, value: Any) -> str:
    """A rejected value as the user wrote it (a number given as text shown as the number)."""
    if setting.text and isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        return value.strip()
    return repr(value)


def _stage_sections(stages: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every concrete ``stages`` path that a declared section matches → its (unresolved) mapping."""
    found: dict[str, Mapping[str, Any]] = {}

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if not isinstance(node, Mapping):
            return
        if path and _matching(SECTIONS, ".".join(path)) is not None:
            found[".".join(path)] = node
        for key, value in node.items():
            if key != PRESETS_KEY and len(path) < 3:
                walk(value, (*path, key))

    walk(stages, ())
    return found


def _other_sections(config: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every concrete path of :data:`OTHER_SECTIONS` that ``config`` has → its mapping."""
    found: dict[str, Mapping[str, Any]] = {}
    for pattern in OTHER_SECTIONS:
        nodes: list[tuple[str, Any]] = [("", config)]
        for part in pattern.split("."):
            deeper: list[tuple[str, Any]] = []
            for path, node in nodes:
                if not isinstance(node, Mapping):
                    continue
                keys = list(node) if part == "*" else [part] if part in node else []
                deeper.extend((f"{path}.{key}" if path else str(key), node[key]) for key in keys)
            nodes = deeper
        found.update({path: node for path, node in nodes if isinstance(node, Mapping)})
    return found


def _no_presets(node: Any, path: tuple[str, ...], preset: str | None) -> None:
    """ConfigError when a ``presets`` entry (at any depth of ``stages``) sets a run-time key; ``preset``
    is the config path of the preset being walked (None outside presets)."""
    if not isinstance(node, Mapping):
        return
    for key, value in node.items():
        if key == PRESETS_KEY and isinstance(value, Mapping):
            base = preset or ".".join(("stages", *path))
            for dataset, entry in value.items():
                _no_presets(entry, path, f"{base}.presets.{dataset}")
            continue
        if preset is not None and key in _runtime_keys(".".join(path)):
            raise ConfigError(
                f"{preset}.{key}: '{key}' is a run-time setting (how the job runs, not what it computes; it is "
                f"passed outside the job's identity, one value for every dataset), so a dataset preset may not "
                f"set it: set it once at {'.'.join(('stages', *path, key))}"
            )
        _no_presets(value, (*path, key), None if preset is None else f"{preset}.{key}")


def _no_refine_overrides(node: Any, where: str) -> None:
    """ConfigError when a method's ``pipeline.refine_overrides.<refine>.train`` (at any depth of
    ``methods`` / ``variants``, presets included) sets a run-time key: it would be left out of the job's
    identity and never reach the job, whose run-time values are ``stages.refine.<refine>.train``'s."""
    if not isinstance(node, Mapping):
        return
    for key, value in node.items():
        if key == "refine_overrides" and isinstance(value, Mapping):
            for refine, parts in value.items():
                train = (parts or {}).get("train") if isinstance(parts, Mapping) else None
                for name in _runtime_keys(f"refine.{refine}.train"):
                    if isinstance(train, Mapping) and name in train:
                        raise ConfigError(
                            f"{where}.refine_overrides.{refine}.train.{name}: '{name}' is a run-time setting "
                            f"(one value for every job), so a method may not override it: set it at "
                            f"stages.refine.{refine}.train.{name}"
                        )
        else:
            _no_refine_overrides(value, f"{where}.{key}")


def check(config: Mapping[str, Any]) -> None:
    """Every run-time value of ``config`` (top level and ``stages``): one ConfigError naming the key
    for a wrong value, a misspelt key of a fully declared section, or a dataset preset (or a method's
    refine override) setting one."""
    for key, setting in TOP_LEVEL.items():
        if key in config:
            _check_value(key, setting, config[key])
    for kind in ("methods", "variants"):
        _no_refine_overrides(config.get(kind) or {}, kind)
    stages = config.get("stages") or {}
    _no_presets(stages, (), None)
    for path, node in _other_sections(config).items():
        keys = _runtime_keys(path)
        for key in keys:
            if key in node:
                _check_value(f"{path}.{key}", keys[key], node[key])
    for path, node in _stage_sections(stages).items():
        section = section_of(path)
        assert section is not None
        for key, value in node.items():
            if key == PRESETS_KEY:
                continue
            if key in section.runtime:
                _check_value(f"stages.{path}.{key}", section.runtime[key], value)
            elif section.identity is not None and key not in section.identity:
                known = ", ".join(sorted([*section.runtime, *section.identity]))
                raise ConfigError(f"unknown key 'stages.{path}.{key}' in config (known keys there: {known})")


def workflow_runtime(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``--runtime`` JSON object of every job: the top-level run-time values and, under
    ``sections``, each stage section's (a job takes its own with ``--runtime-section``)."""
    top = {key: _check_value(key, setting, copy.deepcopy(config[key])) for key, setting in TOP_LEVEL.items()
           if key in config}
    sections = {}
    stages = [(path, f"stages.{path}", node) for path, node in _stage_sections(config.get("stages") or {}).items()]
    others = [(path, path, node) for path, node in _other_sections(config).items()]
    for path, where, node in [*stages, *others]:
        keys = _runtime_keys(path)
        values = {key: _check_value(f"{where}.{key}", keys[key], copy.deepcopy(node[key]))
                  for key in keys if key in node}
        if values:
            sections[path] = values
    return {**top, "sections": sections}


def without_runtime(params: Mapping[str, Any], path: str | None) -> dict[str, Any]:
    """A stage section's resolved parameters less its run-time keys (what goes into the job's identity)."""
    keys = _runtime_keys(path)
    return {key: value for key, value in params.items() if key not in keys}


# ------------------------------------------------------------------------------- the stage side
def attach(config: Mapping[str, Any], runtime: Mapping[str, Any] | None, section: str | None) -> dict[str, Any]:
    """``config`` with ``config["runtime"]``: the top-level values of ``runtime`` (a
    :func:`workflow_runtime` object) and, over them, those of its ``section``; ``config`` as it is
    when ``runtime`` is None (no ``--runtime`` given)."""
    if runtime is None:
        return dict(config)
    runtime = dict(runtime)
    sections = runtime.pop("sections", {}) or {}
    if section is not None:
        if section_of(section) is None:
            raise ConfigError(f"--runtime-section '{section}' is not a declared run-time section "
                              f"({', '.join([*SECTIONS, *OTHER_SECTIONS])})")
        runtime.update(sections.get(section, {}))
    return {**config, RUNTIME_KEY: runtime}


def identity(config: Mapping[str, Any], section: str | None = None) -> dict[str, Any]:
    """``config`` without its run-time values: what a resume key and a provenance hash are made of.
    Besides ``config["runtime"]`` it drops run-time keys that a direct caller (a test, a benchmark) put
    at their config.yaml places: the top level and ``stage`` (for ``section``'s keys)."""
    kept = {key: value for key, value in config.items() if key != RUNTIME_KEY and key not in TOP_LEVEL}
    if section is not None and isinstance(config.get("stage"), Mapping):
        kept["stage"] = without_runtime(config["stage"], section)
    return kept


def settings(config: Mapping[str, Any], section: str | None = None) -> dict[str, Any]:
    """The run-time values of a stage: those a direct caller put at their config.yaml places (top level,
    then ``stage`` for ``section``'s keys), overridden by ``config["runtime"]`` (what the workflow passes)."""
    values = {key: config[key] for key in TOP_LEVEL if key in config}
    stage = config.get("stage")
    if section is not None and isinstance(stage, Mapping):
        values.update({key: stage[key] for key in _runtime_keys(section) if key in stage})
    values.update(config.get(RUNTIME_KEY) or {})
    return values
