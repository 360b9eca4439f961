"""Resolution of ``config.yaml`` into the per-job configuration each stage receives.

The Snakemake rules call these functions (through ``workflow/rules/config.smk``, ``paths.smk`` and
``jobs.smk``) so that no logic hides in the rule files. Two conventions:

* **Presets.** Any mapping in the config may hold ``presets: {<dataset>: {...}}``. Resolving it for a
  dataset deep-merges that preset over the rest of the mapping and drops ``presets``. A preset may only
  override keys that exist in the base mapping, so a misspelt key stops with a message naming it; an
  empty mapping (``{}``) in the base is open and takes whatever the preset puts there.
* **Which presets a dataset takes.** ``datasets.<name>.like`` names the preset set a dataset uses
  (``synth``, ``voc``, ``coco`` or any other dataset name); without it a dataset takes the presets under
  its own name. So a second synthetic style or a user's own VOC-layout dataset runs with the synthetic or
  the VOC presets without copying them.
* **Seeds.** ``<run>@seed<k>`` is the run ``<run>`` with every random generator of every job seeded
  with ``k`` instead of the top-level ``seed`` (``results/synth/cti@seed1/miou.json``): repeated runs
  for mean ± std, with no config entry per seed. The plain name is the run at the top-level seed.
* **Variants.** ``variants: {<name>: {method: <method>, params: {...}}}`` defines named runs of a method
  with overrides (ablation rows, sweeps). A variant name can stand wherever a method name can, e.g.
  ``results/synth/cti_no_bcam/seeds/eval.json``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wsss_core import runtime
from wsss_core.data.classes import dataset_class_names
from wsss_core.errors import ConfigError, DatasetError

PRESETS_KEY = "presets"
# The preset sets config.yaml defines; datasets.<name>.like may also name another dataset.
PRESET_SETS: tuple[str, ...] = ("synth", "voc", "coco")


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any], where: str, strict: bool = True) -> dict[str, Any]:
    """``override`` merged into a copy of ``base``. ``strict``: keys of ``override`` must exist in
    ``base``; otherwise new keys are added — for a method block, whose settings type (which declares
    every key with its default) checks the merged result and names a typo where it was written."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if key not in merged:
            if not strict:
                merged[key] = copy.deepcopy(value)
                continue
            known = ", ".join(sorted(k for k in merged if k != PRESETS_KEY)) or "none"
            raise ConfigError(f"unknown key '{where}.{key}' in config (known keys there: {known})")
        if isinstance(value, Mapping) and isinstance(merged[key], Mapping) and merged[key]:
            merged[key] = deep_merge(merged[key], value, f"{where}.{key}", strict)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve_presets(node: Any, dataset: str, where: str, strict: bool = True) -> Any:
    """``node`` with every ``presets`` mapping inside it applied for ``dataset`` (recursively);
    ``strict`` as in :func:`deep_merge`."""
    if not isinstance(node, Mapping):
        return copy.deepcopy(node)
    presets = node.get(PRESETS_KEY, {}) or {}
    base = {key: resolve_presets(value, dataset, f"{where}.{key}", strict)
            for key, value in node.items() if key != PRESETS_KEY}
    if dataset in presets:
        preset = resolve_presets(presets[dataset], dataset, f"{where}.presets.{dataset}", strict)
        return deep_merge(base, preset, f"{where}.presets.{dataset}", strict)
    return base


# ------------------------------------------------------------------------------------ datasets
def preset_name(config: Mapping[str, Any], dataset: str) -> str:
    """The name under ``presets:`` that applies to ``dataset``: its ``like`` entry, else its own name."""
    entry = (config.get("datasets", {}) or {}).get(dataset) or {}
    return str(entry.get("like") or dataset)


def dataset_config(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """The resolved ``datasets.<dataset>`` entry, with its name."""
    try:
        entry = config["datasets"][dataset]
    except KeyError:
        known = ", ".join(sorted(config.get("datasets", {})))
        raise ConfigError(f"unknown dataset '{dataset}' (config key datasets.{dataset}); known: {known}") from None
    resolved = resolve_presets(entry, preset_name(config, dataset), f"datasets.{dataset}")
    resolved["name"] = dataset
    return resolved


def check_datasets(config: Mapping[str, Any]) -> None:
    """Every ``datasets.<name>`` has one label space (``classes`` or ``class_names``) and a known ``like``."""
    datasets = config.get("datasets", {}) or {}
    for name, entry in datasets.items():
        dataset_class_names(entry or {}, name)
        like = (entry or {}).get("like")
        if like is not None and like not in PRESET_SETS and like not in datasets:
            raise ConfigError(
                f"datasets.{name}.like is '{like}'; use {', '.join(PRESET_SETS)} or another dataset's name "
                f"({', '.join(sorted(datasets))})"
            )


def split_for(config: Mapping[str, Any], dataset: str, role: str) -> str:
    """The split a dataset uses for a role: ``train`` (networks), ``score`` (seeds/masks), ``evaluate``."""
    roles = dataset_config(config, dataset)["roles"]
    return roles[role]


def is_generated(config: Mapping[str, Any], dataset: str) -> bool:
    """True when the dataset is written by the workflow itself (the synthetic one)."""
    return "generator" in config["datasets"][dataset]


def is_prepared(config: Mapping[str, Any], dataset: str) -> bool:
    """True when the dataset is built from its downloaded archives by a rule of workflow/rules/prepare.smk."""
    return "prepare" in (config["datasets"][dataset] or {})


def prepared_marker(config: Mapping[str, Any], dataset: str) -> str:
    """``<root>/prepared.json``: written last by the preparation stage, the input of every job that reads
    a prepared dataset."""
    return f"{Path(config['datasets'][dataset]['root']).as_posix()}/prepared.json"


def prepare_archives(config: Mapping[str, Any], dataset: str) -> dict[str, str]:
    """The archives a prepared dataset is built from (role → path); a missing one stops with one line
    naming the archive and its config key."""
    from wsss_core.data.archives import FORMAT_ARCHIVES, check_archive

    entry = config["datasets"][dataset]
    roles = FORMAT_ARCHIVES.get(entry["format"])
    if roles is None:
        raise ConfigError(f"datasets.{dataset}.prepare: format '{entry['format']}' has no preparation rule")
    archives = (entry.get("prepare") or {}).get("archives") or {}
    unknown = sorted(set(archives) - set(roles))
    if unknown:
        raise ConfigError(f"datasets.{dataset}.prepare.archives has unknown key(s) {unknown}; a {entry['format']} "
                          f"dataset is prepared from {', '.join(roles)}")
    return {role: str(check_archive(archives.get(role), role, dataset, verify_checksum=False)["path"])
            for role in roles}


def check_dataset_root(config: Mapping[str, Any], dataset: str) -> None:
    """Stop with one clear message when a real dataset is not on disk."""
    if is_generated(config, dataset):
        return
    root = Path(dataset_config(config, dataset)["root"])
    if not root.is_dir():
        raise DatasetError(
            f"dataset '{dataset}' is not on disk: expected its root at '{root}'. Set datasets.{dataset}.root "
            f"in config.yaml (or --config datasets='{{{dataset}: {{root: /path}}}}'), or run the synthetic "
            f"default instead: snakemake --cores 2 results/synth/cti/miou.json"
        )


# ------------------------------------------------------------------------------------- methods
def method_names(config: Mapping[str, Any]) -> list[str]:
    return sorted(config.get("methods", {}))


def run_names(config: Mapping[str, Any]) -> list[str]:
    """Methods and variants: every name that may stand in the ``{method}`` wildcard."""
    return sorted(set(method_names(config)) | set(config.get("variants", {}) or {}))


SEED_SUFFIX = re.compile(r"^(?P<run>.+)@seed(?P<seed>[0-9]+)$")
SEED_SUFFIX_PATTERN = "(?:@seed[0-9]+)?"  # for the {method} wildcard's constraint


def split_run(run: str) -> tuple[str, int | None]:
    """``("cti", 2)`` for ``"cti@seed2"``; ``("cti", None)`` for ``"cti"``."""
    match = SEED_SUFFIX.match(run)
    return (match["run"], int(match["seed"])) if match else (run, None)


def run_seed(config: Mapping[str, Any], run: str | None) -> int:
    """The seed of every generator of a run's jobs: its ``@seed<k>`` suffix, else the top-level ``seed``."""
    seed = split_run(run)[1] if run else None
    return int(config.get("seed", 0)) if seed is None else seed


def seeded_run(config: Mapping[str, Any], run: str, seed: int) -> str:
    """The run name that trains ``run`` with ``seed``: the plain name at the top-level seed (its results
    are reused), ``run@seed<k>`` otherwise."""
    return run if seed == int(config.get("seed", 0)) else f"{run}@seed{seed}"


BASE_KEY = "base"  # methods.<name>.base: the method whose block this one extends (mmsegmentation's _base_)


def inherit(base: Any, child: Any) -> Any:
    """``child`` written over a copy of ``base`` (both unresolved blocks): mappings merge key by key,
    ``presets`` merge per dataset, any other value of ``child`` replaces ``base``'s; ``child`` may add keys
    (its settings type checks them)."""
    if not (isinstance(base, Mapping) and isinstance(child, Mapping)):
        return copy.deepcopy(child)
    merged = copy.deepcopy(dict(base))
    for key, value in child.items():
        merged[key] = inherit(merged[key], value) if key in merged else copy.deepcopy(value)
    return merged


def method_entry(config: Mapping[str, Any], name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """``methods.<name>`` with the block of its ``base`` method (recursively) underneath: MCC's entry is
    ToCo's ``pipeline`` and ``params`` with MCC's own keys and presets on top. ``description`` is the
    method's own."""
    methods = config.get("methods", {}) or {}
    entry = dict(methods[name] or {})
    base = entry.pop(BASE_KEY, None)
    if base is None:
        return entry
    where = f"methods.{name}.{BASE_KEY}"
    if base not in methods:
        raise ConfigError(f"{where} names unknown method '{base}'; known: {', '.join(sorted(methods))}")
    if base in (*seen, name):
        raise ConfigError(f"{where}: the chain of bases {' -> '.join((*seen, name, base))} is a cycle")
    parent = method_entry(config, base, (*seen, name))
    return {
        "description": entry.get("description", ""),
        "pipeline": inherit(parent.get("pipeline", {}), entry.get("pipeline", {}) or {}),
        "params": inherit(parent.get("params", {}), entry.get("params", {}) or {}),
    }


def method_bases(config: Mapping[str, Any], name: str) -> list[str]:
    """``name`` and the methods it extends, nearest first (``['mcc', 'toco']``)."""
    chain = [name]
    methods = config.get("methods", {}) or {}
    while (methods.get(chain[-1]) or {}).get(BASE_KEY) in methods and len(chain) <= len(methods):
        chain.append(methods[chain[-1]][BASE_KEY])
    return chain


def runs_bases_first(config: Mapping[str, Any]) -> list[str]:
    """Every method and variant name, those of a base method (ToCo) before those that extend it (MCC), so
    that a bad key in a base block is reported with the base's own settings type (its known keys)."""
    return sorted(run_names(config), key=lambda run: len(method_bases(config, _method_entry(config, run)[0])))


def _method_entry(config: Mapping[str, Any], run: str) -> tuple[str, Mapping[str, Any], Mapping[str, Any]]:
    """(method name, its config entry with its base's underneath, variant overrides) for a method or
    variant name (with or without an ``@seed<k>`` suffix)."""
    run = split_run(run)[0]
    methods = config.get("methods", {})
    variants = config.get("variants", {}) or {}
    if run in methods:
        return run, method_entry(config, run), {}
    if run in variants:
        variant = variants[run]
        base = variant["method"]
        if base not in methods:
            raise ConfigError(f"variants.{run}.method names unknown method '{base}'")
        return base, method_entry(config, base), variant.get("params", {}) or {}
    raise ConfigError(f"unknown method or variant '{run}'; known: {', '.join(run_names(config))}")


def method_config(config: Mapping[str, Any], dataset: str, run: str) -> dict[str, Any]:
    """Hyper-parameters of a method (or variant) for a dataset, as its job receives them: every key of
    its settings type, the defaults declared next to the method's code included (so that writing a
    default in config.yaml or leaving it out is the same job), with ``name`` set to the registered method
    name. One ConfigError line naming the config key that set a bad value."""
    params = method_params(config, dataset, run)
    settings = _load_method_settings(config, dataset, run, params)
    if settings is None:
        return params
    return {**settings.model_dump(mode="json"), "name": params["name"]}


def method_params(config: Mapping[str, Any], dataset: str, run: str) -> dict[str, Any]:
    """The method block (or variant) as config.yaml resolves it for a dataset — base blocks, dataset
    presets and variant overrides merged, defaults not filled in — with ``name`` set to the registered
    method name."""
    name, entry, overrides = _method_entry(config, run)
    run = split_run(run)[0]
    like = preset_name(config, dataset)
    # not strict: a block writes only what differs from its type's defaults, so a preset or a variant may
    # set a key the block leaves out; the settings type checks every key (a typo is named where it was
    # written, by method_value_origin)
    params = resolve_presets(entry.get("params", {}), like, f"methods.{name}.params", strict=False)
    if overrides:
        params = deep_merge(params, resolve_presets(overrides, like, f"variants.{run}.params", strict=False),
                            f"variants.{run}.params", strict=False)
    params["name"] = name
    return params


def value_origin(node: Any, loc: Sequence[Any], like: str, where: str) -> str | None:
    """The config path that gives the value at ``loc`` of ``node`` resolved for the preset set ``like``:
    the innermost ``presets.<like>`` entry that sets it, else the key itself; None if ``node`` does not
    set it (a key a type requires but the block leaves out)."""
    if not loc:
        return where
    if not isinstance(node, Mapping):
        return where + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    presets = node.get(PRESETS_KEY) or {}
    if isinstance(presets, Mapping) and like in presets:
        found = value_origin(presets[like], loc, like, f"{where}.{PRESETS_KEY}.{like}")
        if found is not None:
            return found
    key = loc[0]
    if key == PRESETS_KEY or key not in node:
        return None
    return value_origin(node[key], loc[1:], like, f"{where}.{key}")


def method_value_origin(config: Mapping[str, Any], dataset: str, run: str, loc: Sequence[Any]) -> str | None:
    """Where the resolved ``method_params(config, dataset, run)`` value at ``loc`` comes from: the
    variant's ``params`` (and its presets), else the method block's ``params`` (and its presets)."""
    name, entry, overrides = _method_entry(config, run)
    run = split_run(run)[0]
    like = preset_name(config, dataset)
    found = value_origin(overrides, loc, like, f"variants.{run}.params") if overrides else None
    methods = config.get("methods", {}) or {}
    for method in method_bases(config, name):  # the method's own block, then the blocks it extends
        found = found or value_origin((methods[method] or {}).get("params", {}), loc, like, f"methods.{method}.params")
    return found


def method_settings(config: Mapping[str, Any], dataset: str, run: str) -> Any:
    """The typed settings of a method or variant for a dataset (its ``settings_type``, declared next to
    the method's code); one ConfigError line naming the config key that set a bad value."""
    return _load_method_settings(config, dataset, run, method_params(config, dataset, run))


def _load_method_settings(config: Mapping[str, Any], dataset: str, run: str, params: Mapping[str, Any]) -> Any:
    from wsss_core.methods import METHODS

    method = METHODS.get(params["name"])
    return method.load_settings(params, where=f"methods.{params['name']}.params",
                                origin=lambda loc: method_value_origin(config, dataset, run, loc))


def stage_settings(config: Mapping[str, Any], dataset: str) -> Any:
    """The typed ``stages:`` section resolved for a dataset (``wsss_core.stages.settings``)."""
    from wsss_core.stages.settings import check_stages

    stages = config.get("stages", {}) or {}
    like = preset_name(config, dataset)
    return check_stages(resolve_presets(stages, like, "stages", strict=False),
                        origin=lambda loc: value_origin(stages, loc, like, "stages"))


def pipeline_choice(config: Mapping[str, Any], dataset: str, run: str) -> dict[str, Any]:
    """How a method's final result is produced: ``route`` (``multi_stage`` or ``own_decoder``), and for
    the multi-stage route the ``refine`` and ``segmentation`` names, plus ``refine_overrides``: per
    refinement name, the method's own values for ``stages.refine.<refine>`` (e.g. ViT-PCM's CRF kernel)."""
    name, entry, _ = _method_entry(config, run)
    pipeline = resolve_presets(entry.get("pipeline", {}), preset_name(config, dataset), f"methods.{name}.pipeline")
    variant = (config.get("variants", {}) or {}).get(split_run(run)[0], {})
    pipeline.update(variant.get("pipeline", {}) or {})
    pipeline.setdefault("refine_overrides", {})
    pipeline.setdefault("decoder_overrides", {})
    where = f"variants.{run}.pipeline" if variant.get("pipeline") else f"methods.{name}.pipeline"
    check_route_names(config, pipeline.get("refine"), pipeline.get("segmentation"), f"{where} (dataset {dataset})")
    return pipeline


OWN_REFINEMENT = "own"  # a method's own pseudo-labels (own_pseudo_label_methods)


def own_pseudo_label_methods() -> list[str]:
    """The registered methods that export pseudo-labels of their own (``refine: own``): those whose class
    declares ``Method.pseudo_labels`` (its rule, "par" or "carm")."""
    from wsss_core.methods import METHODS

    return [name for name in METHODS.names() if METHODS.get(name).pseudo_labels is not None]


def refinement_names(config: Mapping[str, Any]) -> list[str]:
    """Refinements a route may name: ``stages.refine`` keys plus ``own``."""
    return [*sorted(config.get("stages", {}).get("refine", {}) or {}), OWN_REFINEMENT]


def network_names(config: Mapping[str, Any]) -> list[str]:
    """Segmentation networks a route may name: ``stages.segmentation`` keys."""
    return sorted(config.get("stages", {}).get("segmentation", {}) or {})


def check_route_names(config: Mapping[str, Any], refine: Any, network: Any, where: str) -> None:
    """ConfigError naming ``where`` when a refinement or segmentation network is not configured (it
    would surface as a missing ``predictions.h5`` input, far from the cause). A config without
    ``stages.refine`` / ``stages.segmentation`` (a partial one, in tests) is not checked for that part."""
    if refine is not None and config.get("stages", {}).get("refine") and refine not in refinement_names(config):
        raise ConfigError(
            f"{where} names refinement '{refine}'; known refinements: {', '.join(refinement_names(config))}"
        )
    if network is not None and network_names(config) and network not in network_names(config):
        raise ConfigError(
            f"{where} names segmentation network '{network}'; known networks (stages.segmentation): "
            f"{', '.join(network_names(config))}"
        )


def refine_params(config: Mapping[str, Any], dataset: str, run: str, refine: str) -> dict[str, Any]:
    """``stages.refine.<refine>`` for a dataset with the method's ``pipeline.refine_overrides.<refine>`` on
    top (overrides are per refinement: ViT-PCM's CRF kernel must not reach IRN's relation labels)."""
    params = stage_params(config, dataset, "refine", refine)
    all_overrides = pipeline_choice(config, dataset, run)["refine_overrides"]
    unknown = sorted(set(all_overrides) - set(config.get("stages", {}).get("refine", {})))
    if unknown:
        raise ConfigError(
            f"methods.{run}.pipeline.refine_overrides names {unknown}, which are not refinements "
            f"(known: {', '.join(config.get('stages', {}).get('refine', {}))}); write e.g. refine_overrides: {{crf: {{...}}}}"
        )
    overrides = all_overrides.get(refine) or {}
    where = f"methods.{run}.pipeline.refine_overrides.{refine}"
    return deep_merge(params, overrides, where) if overrides else params


def refine_crf_params(config: Mapping[str, Any], dataset: str, run: str) -> dict[str, Any]:
    """Stage ``refine_crf``'s parameters: ``stages.refine.crf`` (with the method's overrides) as the stage
    reads it, the CRF's parameters under ``crf`` beside ``background``. config.yaml writes them directly
    under ``stages.refine.crf`` (no ``crf: {crf: ...}``); the job keeps the shape, and so the identity, it
    had before they moved up."""
    params = refine_params(config, dataset, run, "crf")
    job = {"crf": {key: value for key, value in params.items() if key != "background"}}
    if "background" in params:
        job["background"] = params["background"]
    return job


def decoder_params(config: Mapping[str, Any], dataset: str, run: str) -> dict[str, Any]:
    """``stages.decoder_inference`` with the method's ``pipeline.decoder_overrides`` on top (its CRF)."""
    params = stage_params(config, dataset, "decoder_inference")
    overrides = pipeline_choice(config, dataset, run)["decoder_overrides"]
    return deep_merge(params, overrides, f"methods.{run}.pipeline.decoder_overrides") if overrides else params


# -------------------------------------------------------------------------------------- stages
def stage_params(config: Mapping[str, Any], dataset: str, *path: str) -> dict[str, Any]:
    """``stages.<path...>`` for a dataset as its jobs receive it: presets resolved, and for a typed section
    its type's dump (every key, defaults filled in, run-time keys out: ``stages.settings.section_dump``)."""
    node: Any = config.get("stages", {})
    for key in path:
        try:
            node = node[key]
        except (KeyError, TypeError):
            raise ConfigError(f"missing config key stages.{'.'.join(path)}") from None
    from wsss_core.stages.settings import section_dump

    where = "stages." + ".".join(path)
    # not strict: a section writes only what differs from its type's defaults (the types check every key)
    return section_dump(resolve_presets(node, preset_name(config, dataset), where, strict=False), path)


def job_config(
    config: Mapping[str, Any],
    dataset: str,
    run: str | None,
    stage: Mapping[str, Any] | None,
    with_weights: bool = True,
    section: str | None = None,
) -> dict[str, Any]:
    """The JSON object one job receives as ``--config``: its identity, only what that stage's result
    depends on (a job that loads no network gets no ``weights``, so changing a weight path does not re-run
    it). Run-time settings (``wsss_core.runtime``: the top-level ``num_workers`` and ``device``, and the
    run-time keys of the stage's config ``section``) are left out: they reach the stage as ``--runtime``."""
    payload: dict[str, Any] = {
        "dataset": dataset_config(config, dataset),
        "stage": runtime.without_runtime(stage or {}, section),
        "seed": run_seed(config, run),
    }
    if run is not None:
        payload["method"] = method_config(config, dataset, run)
        payload["run"] = run
    if with_weights:
        # only the weight files this job names: moving another key's file does not re-run it
        weights = config.get("weights", {"files": {}, "use_hub": False})
        files = weights.get("files", {}) or {}
        used = used_weight_keys([payload.get("method"), payload["stage"]])
        payload["weights"] = {"use_hub": bool(weights.get("use_hub", False)),
                              "files": {key: files[key] for key in sorted(used) if key in files}}
    return payload


def used_weight_keys(node: Any) -> set[str]:
    """Every ``weights.files`` key a (method or stage) configuration names: the string values of keys
    called ``weights`` at any depth (a method's backbone, ECA's DINO guide, IRN's or DeepLab's backbone)."""
    found: set[str] = set()
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "weights" and isinstance(value, str):
                found.add(value)
            else:
                found |= used_weight_keys(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            found |= used_weight_keys(value)
    return found


def built_weight_files(config: Mapping[str, Any], job: Mapping[str, Any]) -> list[str]:
    """The weight files of a job that the workflow itself builds (paths under ``results/``: the
    synthetic pretrained stand-ins), so that Snakemake makes them before the job runs."""
    files = (job.get("weights") or {}).get("files", {}) or {}
    return sorted(path for path in files.values() if isinstance(path, str) and path.startswith("results/"))


def to_json(payload: Mapping[str, Any]) -> str:
    """Compact, key-sorted JSON (stable, so Snakemake's params trigger fires only on real changes)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


def compute_resources(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """``compute.<dataset>`` (else ``compute.<like>``): gpu, mem_mb, runtime (minutes) of the heavy rules."""
    compute = config.get("compute", {})
    for name in (dataset, preset_name(config, dataset)):
        if name in compute:
            return dict(compute[name])
    raise ConfigError(f"missing config key compute.{dataset} (gpu, mem_mb, runtime)")


POOL_RUNTIME_KEYS = ("workers",)  # processes drawing the pool's images: the images do not depend on them


def pool_identity(pretraining: Mapping[str, Any]) -> dict[str, Any]:
    """``pretraining.pool`` without its run-time keys: what the pool's images are (the pool job's and every
    backbone job's identity). The run-time ones travel in the shell command (``pool_workers``)."""
    pool = pretraining.get("pool", {}) or {}
    return {key: value for key, value in pool.items() if key not in POOL_RUNTIME_KEYS}


def pool_workers(pretraining: Mapping[str, Any]) -> int:
    """``pretraining.pool.workers`` (default: ``PoolParams``'s)."""
    from wsss_core.data.synth_pretrain import PoolParams

    return int((pretraining.get("pool", {}) or {}).get("workers", PoolParams.model_fields["workers"].default))


def pretrain_backbone_job(config: Mapping[str, Any], backbone: str) -> dict[str, Any]:
    """The identity (``--config``) of backbone ``backbone``'s pretraining job: its recipe less the run-time
    keys (``log_every``: ``runtime.OTHER_SECTIONS``, passed in ``--runtime``), the pool's identity (a new pool
    retrains every backbone) and the seed."""
    from wsss_core import runtime

    pretraining = config.get("pretraining", {}) or {}
    return {
        "stage": runtime.without_runtime(pretraining["backbones"][backbone], runtime.PRETRAINING_BACKBONE),
        "pool": pool_identity(pretraining),
        "seed": config.get("seed", 0),
    }


def check_pretraining(pretraining: Mapping[str, Any]) -> None:
    """Check ``pretraining.pool`` and every ``pretraining.backbones.<name>`` recipe against their typed
    settings (unknown keys, types, ranges, the objective's own arguments): ``pretraining.settings``."""
    from wsss_core.pretraining.settings import check_pretraining as check

    check(pretraining)
