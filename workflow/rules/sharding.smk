# Sharded stages: a dataset with sharding.shards N > 1 (wildcard constraint SHARDED; config.smk) runs seed
# export and segmentation/decoder inference as N parallel jobs, each the unsharded rule (seeds.smk,
# segmentation.smk) with a shard's temporary output and `--shard K --shards N`; rules merge_* join the N shard
# stores into the one store an unsharded job writes, image by image bit-identical, in the order of the split
# list. Included after the rules it reuses.


def shard_arguments(wildcards):
    """``--shard K --shards N `` in a shard job's command (the unsharded rule's ``params.shards`` is empty)."""
    return f"--shard {wildcards.shard} --shards {wildcards.shards} "


SHARD_CONSTRAINTS = {"dataset": SHARDED, "shard": "[0-9]+", "shards": "[0-9]+"}


use rule export_seeds as export_seeds_shard with:
    output:
        temp(paths.SEED_SHARD),
    params:
        shards=shard_arguments,
    log:
        "logs/{dataset}/{method}/export_seeds.{shard}of{shards}.log",
    benchmark:
        "benchmarks/{dataset}/{method}/export_seeds.{shard}of{shards}.tsv"
    wildcard_constraints:
        **SHARD_CONSTRAINTS,


use rule infer_segmentation as infer_segmentation_shard with:
    output:
        temp(paths.path(paths.PREDICTION_SHARD, route_dir=paths.SEGMENTATION_ROUTE)),
    params:
        shards=shard_arguments,
    log:
        "logs/{dataset}/{method}/infer_segmentation_{refine}.{network}.{shard}of{shards}.log",
    benchmark:
        "benchmarks/{dataset}/{method}/infer_segmentation_{refine}.{network}.{shard}of{shards}.tsv"
    wildcard_constraints:
        **SHARD_CONSTRAINTS,


use rule infer_decoder as infer_decoder_shard with:
    output:
        temp(paths.path(paths.PREDICTION_SHARD, route_dir=paths.DECODER_ROUTE)),
    params:
        shards=shard_arguments,
    log:
        "logs/{dataset}/{method}/infer_decoder.{shard}of{shards}.log",
    benchmark:
        "benchmarks/{dataset}/{method}/infer_decoder.{shard}of{shards}.tsv"
    wildcard_constraints:
        **SHARD_CONSTRAINTS,


rule merge_seed_shards:
    input:
        dataset=dataset_input,
        shards=seed_shards,
    output:
        paths.SEEDS,
    params:
        config=merge_seeds_job,
        code=code_fingerprint("wsss_core.stages.merge_stores"),
    log:
        "logs/{dataset}/{method}/merge_seed_shards.log",
    benchmark:
        "benchmarks/{dataset}/{method}/merge_seed_shards.tsv"
    wildcard_constraints:
        dataset=SHARDED,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "{PYTHON:q} -m wsss_core.stages.merge_stores --config {params.config:q} --kind seeds "
        "--inputs {input.shards} --output {output} > {log} 2>&1"


rule merge_prediction_shards:
    input:
        dataset=dataset_input,
        shards=prediction_shards,
    output:
        paths.PREDICTIONS,
    params:
        config=merge_predictions_job,
        code=code_fingerprint("wsss_core.stages.merge_stores"),
    log:
        "logs/{dataset}/{method}/merge_prediction_shards_{route_dir}.log",
    benchmark:
        "benchmarks/{dataset}/{method}/merge_prediction_shards_{route_dir}.tsv"
    wildcard_constraints:
        dataset=SHARDED,
        route_dir=paths.ROUTE_DIRS,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "{PYTHON:q} -m wsss_core.stages.merge_stores --config {params.config:q} --kind masks "
        "--inputs {input.shards} --output {output} > {log} 2>&1"
