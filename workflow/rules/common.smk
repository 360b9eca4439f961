# Shared helpers of the rules: config validation, wildcard constraints, and the functions that resolve
# each job's configuration and resources. The logic itself lives in wsss_core.workflow_config (tested).

import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from wsss_core.errors import InputError
from wsss_core.methods import METHODS
from wsss_core.utils.provenance import code_fingerprint
from wsss_core import workflow_config as resolve

validate(config, schema="../schemas/config.schema.yaml")

# Resolve every method/variant for every dataset now, so a misspelt key stops the run before any job.
try:
    for _dataset in config["datasets"]:
        for _run in resolve.run_names(config):
            resolve.method_config(config, _dataset, _run)
except InputError as error:
    raise WorkflowError(f"config.yaml: {error}") from None

# Stages run with the interpreter that runs Snakemake (the project's environment).
PYTHON = sys.executable
GENERATED_DATASETS = [name for name in config["datasets"] if resolve.is_generated(config, name)]


wildcard_constraints:
    dataset="|".join(config["datasets"]),
    method="|".join(resolve.run_names(config)) or "no_method_configured",
    refine="crf|irn|psa",
    network="[a-z0-9_]+",


# ----------------------------------------------------------------------------- jobs' configuration
def _job(wildcards, role, stage_path, with_method=True, with_weights=True, **extra):
    """--config JSON of one job: the dataset, the method (if any), and the stage parameters found at
    ``stages.<stage_path>`` plus ``split`` = the dataset's split for ``role`` (train/score/evaluate)."""
    try:
        params = resolve.stage_params(config, wildcards.dataset, *stage_path) if stage_path else {}
        if role is not None:
            params["split"] = resolve.split_for(config, wildcards.dataset, role)
        params.update(extra)
        run = wildcards.method if with_method else None
        job = resolve.job_config(config, wildcards.dataset, run, params, with_weights=with_weights)
        return resolve.to_json(job)
    except InputError as error:
        raise WorkflowError(f"config.yaml: {error}") from None


def synth_job(wildcards):
    generator = resolve.dataset_config(config, wildcards.dataset)["generator"]
    return _job(wildcards, None, None, with_method=False, with_weights=False, **generator)


def train_job(wildcards):
    return _job(wildcards, "train", ("train_method",))


def export_seeds_job(wildcards):
    return _job(wildcards, "train", ("export_seeds",))


def evaluate_seeds_job(wildcards):
    return _job(wildcards, "score", ("evaluate_seeds",), with_weights=False)


def refine_crf_job(wildcards):
    return _job(wildcards, "train", ("refine", "crf"), with_weights=False)


def evaluate_masks_job(wildcards):
    return _job(wildcards, "score", None, with_weights=False)


def train_segmentation_job(wildcards):
    return _job(wildcards, "train", ("segmentation", wildcards.network, "train"))


def infer_segmentation_job(wildcards):
    return _job(wildcards, "evaluate", ("segmentation", wildcards.network, "inference"))


def infer_decoder_job(wildcards):
    return _job(wildcards, "evaluate", ("decoder_inference",))


def evaluate_final_job(wildcards):
    return _job(wildcards, "evaluate", None, with_weights=False)


def method_module(wildcards):
    """Python module of the method behind a method/variant name (for the code fingerprint)."""
    name = resolve.method_config(config, wildcards.dataset, wildcards.method)["name"]
    return METHODS.get(name).__module__


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
    """The generated dataset folder (synthetic), or nothing for a dataset already on disk — whose root
    is checked here so that a missing dataset stops with one clear message."""
    if wildcards.dataset in GENERATED_DATASETS:
        return f"results/{wildcards.dataset}/dataset"
    try:
        resolve.check_dataset_root(config, wildcards.dataset)
    except InputError as error:
        raise WorkflowError(str(error)) from None
    return []


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


def ablation_inputs(wildcards):
    return {
        f"row{index}": f"results/{wildcards.dataset}/{run}/seeds/eval.json"
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
