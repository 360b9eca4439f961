# The embedded synthetic dataset, written in the PASCAL VOC 2012 layout (read back by the VOC reader).


rule synth_dataset:
    output:
        directory(paths.GENERATED_DATASET),
    params:
        config=synth_job,
        code=code_fingerprint("wsss_core.stages.synth_dataset"),
    log:
        "logs/{dataset}/synth_dataset.log",
    benchmark:
        "benchmarks/{dataset}/synth_dataset.tsv"
    wildcard_constraints:
        dataset="|".join(GENERATED_DATASETS) or "no_generated_dataset",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "{PYTHON:q} -m wsss_core.stages.synth_dataset --config {params.config:q} --output {output} > {log} 2>&1"


# A dataset already on disk enters the DAG through its fingerprint (wsss_core.data.fingerprint): list
# files and labels by content, each listed image/mask/annotation by size and mtime. The digest, computed
# when Snakemake builds the DAG, is a parameter of this rule, so a changed file re-runs it (its log names
# what changed) and, through dataset_input, every stage that reads the dataset.
import functools

from wsss_core.data.fingerprint import fingerprint as _dataset_fingerprint


@functools.lru_cache(maxsize=None)
def _dataset_digest(dataset):
    try:
        return _dataset_fingerprint(resolve.dataset_config(config, dataset))["digest"]
    except InputError as error:
        raise WorkflowError(f"config.yaml: {error}") from None


def dataset_digest(wildcards):
    return _dataset_digest(wildcards.dataset)


def fingerprint_job(wildcards):
    """Only the dataset block: seed, device or workers must not re-run it (and everything downstream)."""
    try:
        return resolve.to_json({"dataset": resolve.dataset_config(config, wildcards.dataset)})
    except InputError as error:
        raise WorkflowError(f"config.yaml: {error}") from None


rule dataset_fingerprint:
    output:
        paths.DATASET_FINGERPRINT,
    params:
        config=fingerprint_job,
        digest=dataset_digest,
        code=code_fingerprint("wsss_core.stages.dataset_fingerprint"),
    log:
        "logs/{dataset}/dataset_fingerprint.log",
    benchmark:
        "benchmarks/{dataset}/dataset_fingerprint.tsv"
    wildcard_constraints:
        dataset="|".join(name for name in config["datasets"] if name not in GENERATED_DATASETS) or "no_disk_dataset",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "{PYTHON:q} -m wsss_core.stages.dataset_fingerprint --config {params.config:q} --output {output} > {log} 2>&1"
