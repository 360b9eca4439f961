# Shared helpers of the rules: config validation, wildcard constraints, and the functions that resolve
# each job's configuration and resources. The logic itself lives in wsss_core.workflow_config (tested).

import json
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from wsss_core import runtime
from wsss_core.errors import InputError
from wsss_core.methods import METHODS
from wsss_core.utils.provenance import code_fingerprint
from wsss_core import workflow_config as resolve
from wsss_core.workflow_checks import config_problem

validate(config, schema="../schemas/config.schema.yaml")


def method_class(dataset, run):
    """The registered Method class behind a method or variant name."""
    return METHODS.get(resolve.method_config(config, dataset, run)["name"])


# Resolve every method/variant for every dataset now, so a misspelt key stops the run before any job.
_problem = config_problem(config)
if _problem:
    raise WorkflowError(_problem)

# Stages run with the interpreter that runs Snakemake (the project's environment).
PYTHON = sys.executable

# Run-time settings (wsss_core.runtime: num_workers, device, log/checkpoint cadence, prefetching, ...) change
# how a job runs, not what it computes. They are not in the jobs' --config (the params rerun trigger) but in
# this one JSON that the shell commands pass as `--runtime {RUNTIME:q} [--runtime-section <stages path>]`:
# Snakemake formats shell commands with the workflow's globals and records only the unformatted command as
# code, so a new value reruns nothing. Being one value for all jobs, a run-time key has no dataset presets.
try:
    runtime.check(config)
except InputError as error:
    raise WorkflowError(f"config.yaml: {error}") from None
RUNTIME = resolve.to_json(runtime.workflow_runtime(config))
GENERATED_DATASETS = [name for name in config["datasets"] if resolve.is_generated(config, name)]


wildcard_constraints:
    dataset="|".join(config["datasets"]),
    method="(?:" + ("|".join(resolve.run_names(config)) or "no_method_configured") + ")" + resolve.SEED_SUFFIX_PATTERN,
    refine="crf|irn|psa|own",
    network="[a-z0-9_]+",


# ----------------------------------------------------------------------------- jobs' configuration
def _job(wildcards, role, stage_path, with_method=True, with_weights=True, section=None, **extra):
    """--config JSON of one job (its identity: the params trigger): the dataset, the method (if any), and
    the stage parameters found at ``stages.<stage_path>`` plus ``split`` = the dataset's split for ``role``
    (train/score/evaluate), less the run-time keys of ``section`` (default: ``stage_path``), which the job
    gets through ``--runtime {RUNTIME:q} --runtime-section <section>`` instead."""
    try:
        params = resolve.stage_params(config, wildcards.dataset, *stage_path) if stage_path else {}
        if role is not None:
            params["split"] = resolve.split_for(config, wildcards.dataset, role)
        params.update(extra)
        run = wildcards.method if with_method else None
        section = section or (".".join(stage_path) if stage_path else None)
        job = resolve.job_config(config, wildcards.dataset, run, params, with_weights=with_weights, section=section)
        return resolve.to_json(job)
    except InputError as error:
        raise WorkflowError(f"config.yaml: {error}") from None


def get_weight_files(job_fn):
    """An input function: the weight files a job's configuration names that the workflow builds itself
    (``results/synth/pretrained/*.safetensors``); real checkpoints are checked by the stage instead."""

    def files(wildcards):
        return resolve.built_weight_files(config, json.loads(job_fn(wildcards)))

    return files


# Pretrained stand-ins of the synthetic presets (workflow/rules/pretrain.smk).
PRETRAINING = config.get("pretraining", {}) or {}
PRETRAINED_BACKBONES = sorted(PRETRAINING.get("backbones", {}) or {})
try:  # every recipe and the pool are typed settings: a bad value stops here, before any job
    resolve.check_pretraining(PRETRAINING)
except InputError as error:
    raise WorkflowError(f"config.yaml: {error}") from None


# The pool's identity: what its images are. ``workers`` (processes drawing them; the images do not depend on
# it) travels in the shell command instead, so that changing it rebuilds neither the pool nor the backbones.
POOL_IDENTITY = resolve.pool_identity(PRETRAINING)
POOL_WORKERS = resolve.pool_workers(PRETRAINING)


def pretrain_pool_job(wildcards):
    return resolve.to_json({"stage": POOL_IDENTITY, "seed": config.get("seed", 0)})


def pretrain_backbone_job(wildcards):
    """The recipe of one backbone plus the pool it trains on (a new pool retrains every backbone)."""
    return resolve.to_json({
        "stage": PRETRAINING["backbones"][wildcards.backbone],
        "pool": POOL_IDENTITY,
        "seed": config.get("seed", 0),
    })


def synth_job(wildcards):
    generator = resolve.dataset_config(config, wildcards.dataset)["generator"]
    return _job(wildcards, None, None, with_method=False, with_weights=False, **generator)


def train_job(wildcards):
    return _job(wildcards, "train", ("train_method",))


def export_seeds_job(wildcards):
    return _job(wildcards, "train", ("export_seeds",))


def export_pseudo_labels_job(wildcards):
    return _job(wildcards, "train", None)


def evaluate_classifier_job(wildcards):
    return _job(wildcards, "score", None, with_weights=False)


def evaluate_seeds_job(wildcards):
    return _job(wildcards, "score", ("evaluate_seeds",), with_weights=False)


def refine_crf_job(wildcards):
    params = resolve.refine_crf_params(config, wildcards.dataset, wildcards.method)
    return _job(wildcards, "train", None, with_weights=False, **params)


def _affinity_job(wildcards, *parts):
    """Job of an IRN/PSA stage: ``refine``, the refiner's ``settings`` under its own name, and the
    named ``parts`` of ``stages.refine.<refine>`` (with the method's refine_overrides)."""
    refine = resolve.refine_params(config, wildcards.dataset, wildcards.method, wildcards.refine)
    extra = {"refine": wildcards.refine, wildcards.refine: refine["settings"]}
    if "label_crf" in parts:
        extra["crf"] = refine["label_crf"]
    if "train" in parts:
        extra.update(refine["train"])
    return _job(wildcards, "train", None, section=f"refine.{wildcards.refine}.train", **extra)


def affinity_labels_job(wildcards):
    return _affinity_job(wildcards, "label_crf")


def train_affinity_job(wildcards):
    return _affinity_job(wildcards, "train")


def refine_random_walk_job(wildcards):
    return _affinity_job(wildcards)


def evaluate_masks_job(wildcards):
    return _job(wildcards, "score", None, with_weights=False)


def train_segmentation_job(wildcards):
    return _job(wildcards, "train", ("segmentation", wildcards.network, "train"))


def infer_segmentation_job(wildcards):
    return _job(wildcards, "evaluate", ("segmentation", wildcards.network, "inference"))


def infer_decoder_job(wildcards):
    params = resolve.decoder_params(config, wildcards.dataset, wildcards.method)
    return _job(wildcards, "evaluate", None, **params)


def evaluate_final_job(wildcards):
    return _job(wildcards, "evaluate", None, with_weights=False)


def method_module(wildcards):
    """Python module of the method behind a method/variant name (for the code fingerprint)."""
    return method_class(wildcards.dataset, wildcards.method).__module__


def makes_own_pseudo_labels(wildcards):
    """Whether the method behind a run exports pseudo-labels of its own (``refine: own``)."""
    return method_class(wildcards.dataset, wildcards.method).pseudo_labels is not None


def stage_code(stage_module):
    """A params function: the code fingerprint of a stage and of the job's method."""

    def fingerprint(wildcards):
        method_source = method_module(wildcards) if hasattr(wildcards, "method") else None
        return code_fingerprint(stage_module, method_source)

    return fingerprint


def pipeline(wildcards):
    return resolve.pipeline_choice(config, wildcards.dataset, wildcards.method)


# ------------------------------------------------------------------------------------- inputs
def dataset_input(wildcards):
    """The generated dataset folder (synthetic), or the fingerprint of a dataset already on disk (rule
    dataset_fingerprint, so a changed image or list re-runs its stages) — whose root is checked here so
    that a missing dataset stops with one clear message."""
    if wildcards.dataset in GENERATED_DATASETS:
        return f"results/{wildcards.dataset}/dataset"
    if resolve.is_prepared(config, wildcards.dataset):  # built from its archives (prepare.smk)
        return resolve.prepared_marker(config, wildcards.dataset)
    try:
        resolve.check_dataset_root(config, wildcards.dataset)
    except InputError as error:
        raise WorkflowError(str(error)) from None
    return f"results/{wildcards.dataset}/dataset.fingerprint.json"


def final_result_input(wildcards):
    """The scores of the configured route: the method's own decoder, or refine + segmentation."""
    choice = pipeline(wildcards)
    base = f"results/{wildcards.dataset}/{wildcards.method}"
    if choice["route"] == "own_decoder":
        return f"{base}/decoder/miou.json"
    return f"{base}/seg/{choice['refine']}.{choice['segmentation']}/miou.json"


# ---------------------------------------------------------------------------------- resources
def heavy_gpu(wildcards):
    return int(resolve.compute_resources(config, wildcards.dataset)["gpu"])


def heavy_mem_mb(wildcards):
    return int(resolve.compute_resources(config, wildcards.dataset)["mem_mb"])


def heavy_runtime(wildcards):
    return int(resolve.compute_resources(config, wildcards.dataset)["runtime"])


def final_result_sources(wildcards):
    """Scores that the final miou.json summarises: seeds, pseudo-masks (multi-stage) and the result."""
    base = f"results/{wildcards.dataset}/{wildcards.method}"
    sources = {"result": final_result_input(wildcards), "seeds": f"{base}/seeds/eval.json"}
    choice = pipeline(wildcards)
    if choice["route"] != "own_decoder":
        sources["masks"] = f"{base}/masks/{choice['refine']}/eval.json"
    elif makes_own_pseudo_labels(wildcards):
        sources["masks"] = f"{base}/masks/own/eval.json"
    return sources


def masks_argument(wildcards):
    """``--masks <eval.json>`` for the multi-stage route (the file is also a declared input)."""
    sources = final_result_sources(wildcards)
    return f"--masks {sources['masks']}" if "masks" in sources else ""


def pipeline_json(wildcards):
    return resolve.to_json(pipeline(wildcards))


# Stages never download weights unless the config allows the hub.
HUB_ENV = "" if config.get("weights", {}).get("use_hub") else "HF_HUB_OFFLINE=1"

for _name in GENERATED_DATASETS:
    if config["datasets"][_name]["root"] != f"results/{_name}/dataset":
        raise WorkflowError(
            f"config.yaml: datasets.{_name}.root must be results/{_name}/dataset, where rule synth_dataset writes it"
        )


# ----------------------------------------------------------------------------------- ablations
def ablation_rows(wildcards):
    """label → run (method or variant) of stages.ablations.<name>.rows."""
    table = resolve.stage_params(config, wildcards.dataset, "ablations", wildcards.ablation)
    return {label: row["run"] for label, row in table["rows"].items()}


ABLATION_LEVEL_FILES = {"seeds": "seeds/eval.json", "final": "miou.json"}


def ablation_inputs(wildcards):
    """Each row's scores: its seed evaluation (``levels: seeds``, the default) or its final miou.json
    (``levels: final``: seed, pseudo-mask and final mIoU columns)."""
    table = resolve.stage_params(config, wildcards.dataset, "ablations", wildcards.ablation)
    level = table.get("levels", "seeds")
    if level not in ABLATION_LEVEL_FILES:
        raise WorkflowError(
            f"config.yaml: stages.ablations.{wildcards.ablation}.levels is '{level}'; use seeds or final"
        )
    return {
        f"row{index}": f"results/{wildcards.dataset}/{run}/{ABLATION_LEVEL_FILES[level]}"
        for index, run in enumerate(ablation_rows(wildcards).values())
    }


def ablation_rows_argument(wildcards):
    """``'LABEL=eval.json' ...`` for the stage, shell-quoted."""
    from shlex import quote

    return " ".join(
        quote(f"{label}={wildcards_path}")
        for label, wildcards_path in zip(ablation_rows(wildcards), ablation_inputs(wildcards).values())
    )


def ablation_job(wildcards):
    table = resolve.stage_params(config, wildcards.dataset, "ablations", wildcards.ablation)
    return _job(wildcards, None, None, with_method=False, with_weights=False, **table)


# --- reporting: summary tables and figures (workflow/rules/report.smk); parameters at stages.reporting
def reporting_params(dataset):
    """``stages.reporting`` resolved for a dataset (runs, routes, sample_ids, num_samples, ...)."""
    try:
        return resolve.stage_params(config, dataset, "reporting")
    except InputError as error:
        raise WorkflowError(f"config.yaml: {error}") from None


def reporting_runs(dataset):
    """Runs (methods or variants) that the dataset's summary and figures cover, in table order."""
    runs = list(reporting_params(dataset).get("runs") or [])
    unknown = sorted(set(runs) - set(resolve.run_names(config)))
    if unknown:
        raise WorkflowError(
            f"config.yaml: stages.reporting.runs names {unknown}, which are neither methods nor variants"
        )
    return runs


def reporting_routes(dataset):
    """Further REFINE.NETWORK routes per run listed in the summary: ``stages.reporting.routes``."""
    routes = dict(reporting_params(dataset).get("routes") or {})
    unknown = sorted(set(routes) - set(reporting_runs(dataset)))
    if unknown:
        raise WorkflowError(
            f"config.yaml: stages.reporting.routes names {unknown}, which are not in stages.reporting.runs"
        )
    return routes


def reporting_targets(dataset):
    """Every table and figure of a dataset: add to ``rule all`` (or default_targets) so that
    ``snakemake --report`` collects them."""
    base = f"results/{dataset}"
    targets = [f"{base}/summary.md", f"{base}/figures/class_iou.png"]
    for run in reporting_runs(dataset):
        targets += [f"{base}/{run}/figures/samples.png", f"{base}/{run}/figures/training_curves.png"]
    return targets


def comparison_runs(dataset, level="miou.json"):
    """title → {run: [<level> of each seed]} of ``stages.reporting.comparisons`` over
    ``stages.reporting.seeds`` (the plain run at the top-level seed, ``run@seed<k>`` for the others);
    ``level`` is ``miou.json`` (whole chains) or ``seeds/eval.json`` (the seed level alone)."""
    params = reporting_params(dataset)
    seeds = [int(seed) for seed in params.get("seeds") or [config.get("seed", 0)]]
    comparisons = {}
    for key, entry in (params.get("comparisons") or {}).items():
        unknown = sorted(set(entry["runs"]) - set(resolve.run_names(config)))
        if unknown:
            raise WorkflowError(
                f"config.yaml: stages.reporting.comparisons.{key}.runs names {unknown}, which are neither "
                f"methods nor variants (known: {', '.join(resolve.run_names(config))})"
            )
        comparisons[entry.get("title", key)] = {
            run: [f"results/{dataset}/{resolve.seeded_run(config, run, seed)}/{level}" for seed in seeds]
            for run in entry["runs"]
        }
    return comparisons


def _comparison_level(wildcards):
    return "seeds/eval.json" if wildcards.get("level") == "_seeds" else "miou.json"


def comparison_inputs(wildcards):
    """Each compared run's score file per seed, and its classifier evaluation (a level of the table)."""
    paths = {path for runs in comparison_runs(wildcards.dataset, _comparison_level(wildcards)).values()
             for paths in runs.values() for path in paths}
    for path in list(paths):
        run_dir = path.removesuffix("/" + _comparison_level(wildcards))
        paths.add(f"{run_dir}/train/classification.json")
    return sorted(paths)


def comparison_argument(wildcards):
    from shlex import quote

    return " ".join(
        quote(title + "".join(f"|{run}=" + ",".join(paths) for run, paths in runs.items()))
        for title, runs in comparison_runs(wildcards.dataset, _comparison_level(wildcards)).items()
    )


def comparison_job(wildcards):
    splits = resolve.dataset_config(config, wildcards.dataset)["roles"]
    return _job(wildcards, None, None, with_method=False, with_weights=False, splits=splits)


def reporting_figures(wildcards):
    """Every PNG of a dataset's reporting (class-IoU chart, per-run sample grids and training curves)."""
    return [target for target in reporting_targets(wildcards.dataset) if target.endswith(".png")]


def figure_index_job(wildcards):
    return _job(wildcards, None, None, with_method=False, with_weights=False)


def summary_input(wildcards):
    """The final scores of each run, and the masks/result scores of its extra routes."""
    base = f"results/{wildcards.dataset}"
    runs = reporting_runs(wildcards.dataset)
    inputs = [f"{base}/{run}/{name}" for run in runs for name in ("miou.json", "train/classification.json")]
    for run, routes in reporting_routes(wildcards.dataset).items():
        for route in routes:
            refine = route.split(".")[0]
            inputs += [f"{base}/{run}/masks/{refine}/eval.json", f"{base}/{run}/seg/{route}/miou.json"]
    return inputs


def summary_run_dirs(wildcards):
    return " ".join(f"results/{wildcards.dataset}/{run}" for run in reporting_runs(wildcards.dataset))


def summary_job(wildcards):
    runs = reporting_runs(wildcards.dataset)
    methods = {run: resolve.method_config(config, wildcards.dataset, run)["name"] for run in runs}
    return _job(wildcards, None, None, with_method=False, with_weights=False,
                routes=reporting_routes(wildcards.dataset), methods=methods)


def class_iou_input(wildcards):
    return [f"results/{wildcards.dataset}/{run}/miou.json" for run in reporting_runs(wildcards.dataset)]


def class_iou_scores(wildcards):
    """``--scores`` arguments: RUN=results/{ds}/{run}/miou.json."""
    return " ".join(f"{run}=results/{wildcards.dataset}/{run}/miou.json" for run in reporting_runs(wildcards.dataset))


def class_iou_job(wildcards):
    panel = reporting_params(wildcards.dataset).get("classes_per_panel", 21)
    return _job(wildcards, None, None, with_method=False, with_weights=False, classes_per_panel=panel)


def _route_files(wildcards):
    """Pseudo-mask store and prediction store (and segmentation model) of a run's configured route."""
    base = f"results/{wildcards.dataset}/{wildcards.method}"
    choice = pipeline(wildcards)
    if choice["route"] == "own_decoder":
        files = {"predictions": f"{base}/decoder/predictions.h5"}
        if makes_own_pseudo_labels(wildcards):
            files["masks"] = f"{base}/masks/own/masks.h5"
        return files
    route = f"{choice['refine']}.{choice['segmentation']}"
    return {
        "masks": f"{base}/masks/{choice['refine']}/masks.h5",
        "predictions": f"{base}/seg/{route}/predictions.h5",
        "segmentation_model": f"{base}/seg/{route}/model.pt",
    }


def sample_grid_input(wildcards):
    base = f"results/{wildcards.dataset}/{wildcards.method}"
    files = _route_files(wildcards)
    inputs = {"dataset": dataset_input(wildcards), "seeds": f"{base}/seeds/cams.h5",
              "seed_eval": f"{base}/seeds/eval.json", "predictions": files["predictions"]}
    if "masks" in files:
        inputs["masks"] = files["masks"]
    return inputs


def sample_grid_masks_option(wildcards):
    """``--masks <store>`` on the multi-stage route (the store is also a declared input)."""
    files = _route_files(wildcards)
    return f"--masks {files['masks']}" if "masks" in files else ""


def sample_grid_job(wildcards):
    params = reporting_params(wildcards.dataset)
    return _job(wildcards, None, None, with_weights=False, sample_ids=list(params.get("sample_ids") or []),
                num_samples=params.get("num_samples", 3))


def training_curves_input(wildcards):
    base = f"results/{wildcards.dataset}/{wildcards.method}"
    inputs = {"model": f"{base}/train/model.pt", "seed_eval": f"{base}/seeds/eval.json"}
    files = _route_files(wildcards)
    if "segmentation_model" in files:
        inputs["segmentation_model"] = files["segmentation_model"]
    return inputs


def segmentation_model_option(wildcards):
    """``--segmentation-model <model.pt>`` on the multi-stage route (also a declared input)."""
    files = _route_files(wildcards)
    return f"--segmentation-model {files['segmentation_model']}" if "segmentation_model" in files else ""


def training_curves_job(wildcards):
    diagnostics = reporting_params(wildcards.dataset).get("diagnostics", ["memory_full_classes"])
    return _job(wildcards, None, None, with_weights=False, diagnostics=list(diagnostics))


# --- paper scale (sharding, DDP)
# Sharded stages (seed export, segmentation inference): `sharding.shards` (with presets per dataset) cuts
# a split into N parallel jobs that rule merge_* joins into the store an unsharded job writes. Datasets
# with one shard keep the plain rules; the per-rule `dataset` constraints below pick one route.
# Multi-GPU training: compute.<dataset>.gpu > 1 makes the training stage run that many torchrun workers.
# SLURM: `slurm:` gives partitions, account, GPU model and CPUs per GPU to every rule (profiles/slurm).
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


def _shard_files(wildcards, pattern):
    shards = dataset_shards(wildcards.dataset)
    names = dict(wildcards.items())
    return [pattern.format(shard=shard, shards=shards, **names) for shard in range(shards)]


def seed_shards(wildcards):
    """The seed-store shards that rule merge_seed_shards joins."""
    return _shard_files(wildcards, "results/{dataset}/{method}/seeds/shards/cams.{shard}of{shards}.h5")


def prediction_shards(wildcards):
    """The prediction shards of a segmentation network or of a method's own decoder."""
    return _shard_files(wildcards, "results/{dataset}/{method}/{route_dir}/shards/predictions.{shard}of{shards}.h5")


def merge_seeds_job(wildcards):
    return _job(wildcards, "train", None, with_method=False, with_weights=False)


def merge_predictions_job(wildcards):
    return _job(wildcards, "evaluate", None, with_method=False, with_weights=False)


def training_processes(wildcards):
    """torchrun workers of a training job: the GPUs its rule asks for (one process on CPU)."""
    return max(heavy_gpu(wildcards), 1)


def _processes(wildcards):
    """`stage.processes` for a training job with several GPUs; nothing for one (the JSON, hence the
    params trigger and the resume hash, of one-GPU and CPU jobs stay as they were)."""
    processes = training_processes(wildcards)
    return {"processes": processes} if processes > 1 else {}


def train_distributed_job(wildcards):
    """train_job, data-parallel over the job's GPUs when it has several."""
    return _job(wildcards, "train", ("train_method",), **_processes(wildcards))


def train_segmentation_distributed_job(wildcards):
    """train_segmentation_job, data-parallel over the job's GPUs when it has several."""
    return _job(wildcards, "train", ("segmentation", wildcards.network, "train"), **_processes(wildcards))


def _slurm(key, default=""):
    return (config.get("slurm") or {}).get(key, default)


def slurm_account(wildcards):
    return str(_slurm("account") or "")


def slurm_heavy_partition(wildcards):
    """The GPU partition for a heavy rule that gets GPUs on this dataset, else the CPU partition."""
    return str(_slurm("gpu_partition") if heavy_gpu(wildcards) else _slurm("cpu_partition"))


def slurm_light_partition(wildcards):
    return str(_slurm("cpu_partition") or "")


def slurm_gpu_model(wildcards):
    """--gpus=<model>:N; empty for CPU jobs (a model alone would make the plugin ask for one GPU)."""
    return str(_slurm("gpu_model") or "") if heavy_gpu(wildcards) else ""


def slurm_cpus_per_gpu(wildcards):
    return int(_slurm("cpus_per_gpu", 0) or 0) if heavy_gpu(wildcards) else 0


# The memory of the smallest jobs (summaries, tables, final_result). Under SLURM each job runs Snakemake
# itself, which parses this workflow before the stage starts and stays alive while it runs; the parse
# imports torch and timm through the method registry (peak RSS 0.95 GB: `/usr/bin/time -v snakemake -n`),
# so a 1000 MB job was killed by the cgroup limit (1015 MiB used). No rule asks for less than this.
SMALL_JOB_MEM_MB = 2000


# `resources: ..., **SLURM_HEAVY` in the GPU-capable rules, `**SLURM_LIGHT` in the CPU rules.
SLURM_HEAVY = {
    "slurm_partition": slurm_heavy_partition,
    "slurm_account": slurm_account,
    "gpu_model": slurm_gpu_model,
    "cpus_per_gpu": slurm_cpus_per_gpu,
}
SLURM_LIGHT = {"slurm_partition": slurm_light_partition, "slurm_account": slurm_account}
