# What each job computes: its --config JSON (its identity, the params rerun trigger) and the code fingerprint
# of its stage and method. Run-time settings are not in it: they travel as --runtime {RUNTIME:q} (config.smk).

import json

from wsss_core.utils.provenance import code_fingerprint


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


def method_module(wildcards):
    """Python module of the method behind a method/variant name (for the code fingerprint)."""
    return method_class(wildcards.dataset, wildcards.method).__module__


def stage_code(stage_module):
    """A params function: the code fingerprint of a stage and of the job's method."""

    def fingerprint(wildcards):
        method_source = method_module(wildcards) if hasattr(wildcards, "method") else None
        return code_fingerprint(stage_module, method_source)

    return fingerprint


def pipeline_json(wildcards):
    return resolve.to_json(pipeline(wildcards))


# ------------------------------------------------------------------------ pretraining, the dataset
def pretrain_pool_job(wildcards):
    return resolve.to_json({"stage": POOL_IDENTITY, "seed": config.get("seed", 0)})


def synth_job(wildcards):
    generator = resolve.dataset_config(config, wildcards.dataset)["generator"]
    return _job(wildcards, None, None, with_method=False, with_weights=False, **generator)


# ------------------------------------------------------------------------- training, seeds, masks
def _processes(wildcards):
    """`stage.processes` for a training job with several GPUs; nothing for one (the JSON, hence the
    params trigger and the resume hash, of one-GPU and CPU jobs stay as they were)."""
    processes = training_processes(wildcards)
    return {"processes": processes} if processes > 1 else {}


def train_job(wildcards):
    return _job(wildcards, "train", ("train_method",))


def train_distributed_job(wildcards):
    """train_job, data-parallel over the job's GPUs when it has several."""
    return _job(wildcards, "train", ("train_method",), **_processes(wildcards))


def export_seeds_job(wildcards):
    return _job(wildcards, "train", ("export_seeds",))


def export_pseudo_labels_job(wildcards):
    return _job(wildcards, "train", None)


def evaluate_classifier_job(wildcards):
    return _job(wildcards, "score", None, with_weights=False)


def evaluate_seeds_job(wildcards):
    return _job(wildcards, "score", ("evaluate_seeds",), with_weights=False)


def merge_seeds_job(wildcards):
    return _job(wildcards, "train", None, with_method=False, with_weights=False)


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


# ----------------------------------------------------------------------- segmentation, results
def train_segmentation_job(wildcards):
    return _job(wildcards, "train", ("segmentation", wildcards.network, "train"))


def train_segmentation_distributed_job(wildcards):
    """train_segmentation_job, data-parallel over the job's GPUs when it has several."""
    return _job(wildcards, "train", ("segmentation", wildcards.network, "train"), **_processes(wildcards))


def infer_segmentation_job(wildcards):
    return _job(wildcards, "evaluate", ("segmentation", wildcards.network, "inference"))


def infer_decoder_job(wildcards):
    params = resolve.decoder_params(config, wildcards.dataset, wildcards.method)
    return _job(wildcards, "evaluate", None, **params)


def merge_predictions_job(wildcards):
    return _job(wildcards, "evaluate", None, with_method=False, with_weights=False)


def evaluate_final_job(wildcards):
    return _job(wildcards, "evaluate", None, with_weights=False)


# ------------------------------------------------------------------------- ablations, reporting
def ablation_job(wildcards):
    """The table's block as config.yaml gives it (its keys are the stage's ``AblationTable``)."""
    table = resolve.stage_params(config, wildcards.dataset, "ablations", wildcards.ablation)
    return _job(wildcards, None, None, with_method=False, with_weights=False, **table)


def comparison_job(wildcards):
    splits = resolve.dataset_config(config, wildcards.dataset)["roles"]
    return _job(wildcards, None, None, with_method=False, with_weights=False, splits=splits)


def figure_index_job(wildcards):
    return _job(wildcards, None, None, with_method=False, with_weights=False)


def summary_job(wildcards):
    runs = reporting_runs(wildcards.dataset)
    methods = {run: resolve.method_config(config, wildcards.dataset, run)["name"] for run in runs}
    return _job(wildcards, None, None, with_method=False, with_weights=False,
                routes=reporting_routes(wildcards.dataset), methods=methods)


def class_iou_job(wildcards):
    panel = reporting_settings(wildcards.dataset).classes_per_panel
    return _job(wildcards, None, None, with_method=False, with_weights=False, classes_per_panel=panel)


def sample_grid_job(wildcards):
    settings = reporting_settings(wildcards.dataset)
    return _job(wildcards, None, None, with_weights=False, sample_ids=list(settings.sample_ids),
                num_samples=settings.num_samples)


def training_curves_job(wildcards):
    diagnostics = reporting_settings(wildcards.dataset).diagnostics
    return _job(wildcards, None, None, with_weights=False, diagnostics=list(diagnostics))
