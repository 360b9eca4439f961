# The configuration: config.yaml validated and resolved once, before any rule is read, and the values the
# rules take from it (run names, datasets, run-time JSON, pretraining, shard counts, reporting). A bad value
# stops here with one line (wsss_core.workflow_checks, wsss_core.workflow_config: the logic, tested).

import functools
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from wsss_core import artefacts as paths
from wsss_core import runtime
from wsss_core.errors import InputError
from wsss_core.methods import METHODS
from wsss_core import workflow_config as resolve
from wsss_core.workflow_checks import config_problem

validate(config, schema="../schemas/config.schema.yaml")

# Resolve every method/variant for every dataset now, so a misspelt key stops the run before any job.
_problem = config_problem(config)
if _problem:
    raise WorkflowError(_problem)


def config_error(function, *args):
    """``function(*args)``, an InputError from it as the one-line WorkflowError the workflow stops with."""
    try:
        return function(*args)
    except InputError as error:
        raise WorkflowError(f"config.yaml: {error}") from None


def method_class(dataset, run):
    """The registered Method class behind a method or variant name."""
    return METHODS.get(resolve.method_config(config, dataset, run)["name"])


# Stages run with the interpreter that runs Snakemake (the project's environment).
PYTHON = sys.executable

# Run-time settings (wsss_core.runtime: num_workers, device, log/checkpoint cadence, prefetching, ...) change
# how a job runs, not what it computes. They are not in the jobs' --config (the params rerun trigger) but in
# this one JSON that the shell commands pass as `--runtime {RUNTIME:q} [--runtime-section <stages path>]`:
# Snakemake formats shell commands with the workflow's globals and records only the unformatted command as
# code, so a new value reruns nothing. Being one value for all jobs, a run-time key has no dataset presets.
config_error(runtime.check, config)
RUNTIME = resolve.to_json(runtime.workflow_runtime(config))
GENERATED_DATASETS = [name for name in config["datasets"] if resolve.is_generated(config, name)]
for _name in GENERATED_DATASETS:
    if config["datasets"][_name]["root"] != paths.path(paths.GENERATED_DATASET, dataset=_name):
        raise WorkflowError(
            f"config.yaml: datasets.{_name}.root must be {paths.path(paths.GENERATED_DATASET, dataset=_name)}, "
            "where rule synth_dataset writes it"
        )

# Stages never download weights unless the config allows the hub.
HUB_ENV = "" if config.get("weights", {}).get("use_hub") else "HF_HUB_OFFLINE=1"


wildcard_constraints:
    dataset="|".join(config["datasets"]),
    method="(?:" + ("|".join(resolve.run_names(config)) or "no_method_configured") + ")" + resolve.SEED_SUFFIX_PATTERN,
    refine="crf|irn|psa|own",
    network="[a-z0-9_]+",


# Pretrained stand-ins of the synthetic presets (workflow/rules/pretrain.smk).
PRETRAINING = config.get("pretraining", {}) or {}
PRETRAINED_BACKBONES = sorted(PRETRAINING.get("backbones", {}) or {})
# every recipe and the pool are typed settings: a bad value stops here, before any job
config_error(resolve.check_pretraining, PRETRAINING)
# The pool's identity: what its images are. ``workers`` (processes drawing them; the images do not depend on
# it) travels in the shell command instead, so that changing it rebuilds neither the pool nor the backbones.
POOL_IDENTITY = resolve.pool_identity(PRETRAINING)
POOL_WORKERS = resolve.pool_workers(PRETRAINING)


# --- paper scale: sharded stages (seed export, segmentation inference). `sharding.shards` (with presets per
# dataset) cuts a split into N parallel jobs that rule merge_* (sharding.smk) joins into the store an unsharded
# job writes. Datasets with one shard keep the plain rules; the per-rule `dataset` constraints pick one route.
def dataset_shards(dataset):
    """Number of shards of the sharded stages for a dataset (`sharding.shards`, presets applied)."""
    try:
        sharding = resolve.resolve_presets(
            config.get("sharding", {"shards": 1}), resolve.preset_name(config, dataset), "sharding"
        )
        shards = int(sharding.get("shards", 1))
    except (InputError, TypeError, ValueError) as error:
        raise WorkflowError(f"config.yaml: sharding.shards for dataset '{dataset}': {error}") from None
    if shards < 1:
        raise WorkflowError(f"config.yaml: sharding.shards must be at least 1 (dataset '{dataset}', got {shards})")
    return shards


SHARDED_DATASETS = [name for name in config["datasets"] if dataset_shards(name) > 1]
SHARDED = "|".join(SHARDED_DATASETS) or "no_sharded_dataset"
UNSHARDED = "|".join(name for name in config["datasets"] if name not in SHARDED_DATASETS) or "no_unsharded_dataset"


# --- reporting (report.smk) and ablations (ablation.smk): their typed settings (wsss_core.stages.settings)
@functools.lru_cache(maxsize=None)
def stages_settings(dataset):
    """``stages:`` resolved for a dataset, as its type (``wsss_core.stages.settings.StagesSettings``)."""
    return config_error(resolve.stage_settings, config, dataset)


def reporting_settings(dataset):
    """``stages.reporting`` resolved for a dataset, as its type ``ReportingStage`` (runs, routes, ...)."""
    return stages_settings(dataset).reporting


def _check_runs(runs, key):
    unknown = sorted(set(runs) - set(resolve.run_names(config)))
    if unknown:
        raise WorkflowError(
            f"config.yaml: {key} names {unknown}, which are neither methods nor variants "
            f"(known: {', '.join(resolve.run_names(config))})"
        )


def reporting_runs(dataset):
    """Runs (methods or variants) that the dataset's summary and figures cover, in table order."""
    runs = list(reporting_settings(dataset).runs)
    _check_runs(runs, "stages.reporting.runs")
    return runs


def reporting_routes(dataset):
    """Further REFINE.NETWORK routes per run listed in the summary: ``stages.reporting.routes``."""
    routes = dict(reporting_settings(dataset).routes)
    unknown = sorted(set(routes) - set(reporting_runs(dataset)))
    if unknown:
        raise WorkflowError(
            f"config.yaml: stages.reporting.routes names {unknown}, which are not in stages.reporting.runs"
        )
    return routes


def ablation_table(wildcards):
    """``stages.ablations.<ablation>`` resolved for the dataset, as its type ``AblationTable``."""
    return stages_settings(wildcards.dataset).ablations[wildcards.ablation]


def ablation_rows(wildcards):
    """label → run (method or variant) of stages.ablations.<name>.rows."""
    return {label: row.run for label, row in ablation_table(wildcards).rows.items()}
