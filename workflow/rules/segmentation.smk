# Segmentation: a DeepLab network trained on the pseudo-masks and evaluated on the evaluation split with
# multi-scale + flip + dense CRF inference; or, for end-to-end methods, the method's own decoder.
# A dataset with `sharding.shards` N > 1 runs inference as N parallel shard jobs (rules *_shard, these rules
# with a shard's output: sharding.smk) that rule merge_prediction_shards joins into the same predictions.h5.


rule train_segmentation:
    input:
        dataset=dataset_input,
        masks=paths.MASKS,
        weights=get_weight_files(train_segmentation_job),
    output:
        paths.SEGMENTATION_MODEL,
    params:
        config=train_segmentation_distributed_job,
        code=stage_code("wsss_core.stages.train_segmentation"),
    log:
        "logs/{dataset}/{method}/train_segmentation_{refine}.{network}.log",
    benchmark:
        "benchmarks/{dataset}/{method}/train_segmentation_{refine}.{network}.tsv"
    threads: 8
    resources:
        gpu=heavy_gpu,
        mem_mb=heavy_mem_mb,
        runtime=heavy_runtime,
        **SLURM_HEAVY,
    shell:
        "OMP_NUM_THREADS={threads} {HUB_ENV} {PYTHON:q} -m wsss_core.stages.train_segmentation "
        "--config {params.config:q} --runtime {RUNTIME:q} --runtime-section segmentation.{wildcards.network}.train "
        "--masks {input.masks} --output {output} > {log} 2>&1"


rule infer_segmentation:
    input:
        dataset=dataset_input,
        model=paths.SEGMENTATION_MODEL,
    output:
        paths.path(paths.PREDICTIONS, route_dir=paths.SEGMENTATION_ROUTE),
    params:
        config=infer_segmentation_job,
        code=stage_code("wsss_core.stages.infer_segmentation"),
        shards="",  # sharding.smk: "--shard K --shards N " in the *_shard rule
    log:
        "logs/{dataset}/{method}/infer_segmentation_{refine}.{network}.log",
    benchmark:
        "benchmarks/{dataset}/{method}/infer_segmentation_{refine}.{network}.tsv"
    wildcard_constraints:
        dataset=UNSHARDED,
    threads: 4
    resources:
        gpu=heavy_gpu,
        mem_mb=heavy_mem_mb,
        runtime=heavy_runtime,
        **SLURM_HEAVY,
    shell:
        "OMP_NUM_THREADS={threads} {PYTHON:q} -m wsss_core.stages.infer_segmentation --config {params.config:q} "
        "--runtime {RUNTIME:q} --runtime-section segmentation.{wildcards.network}.inference "
        "--model {input.model} {params.shards}--output {output} > {log} 2>&1"


rule infer_decoder:
    input:
        dataset=dataset_input,
        model=paths.MODEL,
    output:
        paths.path(paths.PREDICTIONS, route_dir=paths.DECODER_ROUTE),
    params:
        config=infer_decoder_job,
        code=stage_code("wsss_core.stages.infer_segmentation"),
        shards="",  # sharding.smk: "--shard K --shards N " in the *_shard rule
    log:
        "logs/{dataset}/{method}/infer_decoder.log",
    benchmark:
        "benchmarks/{dataset}/{method}/infer_decoder.tsv"
    wildcard_constraints:
        dataset=UNSHARDED,
    threads: 4
    resources:
        gpu=heavy_gpu,
        mem_mb=heavy_mem_mb,
        runtime=heavy_runtime,
        **SLURM_HEAVY,
    shell:
        "OMP_NUM_THREADS={threads} {PYTHON:q} -m wsss_core.stages.infer_segmentation --config {params.config:q} "
        "--runtime {RUNTIME:q} "
        "--model {input.model} {params.shards}--output {output} > {log} 2>&1"
