# Merging of sharded stages: N shard stores (temporary) → the one store that an unsharded job writes,
# image by image bit-identical, in the order of the split list. Only for datasets with sharding.shards > 1
# (wildcard constraint SHARDED); the shards come from export_seeds_shard (seeds.smk) and
# infer_segmentation_shard / infer_decoder_shard (segmentation.smk).


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
