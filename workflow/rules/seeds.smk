# CAM seeds: export to the HDF5 seed store, and their evaluation (background-threshold sweep, P/R).
# A dataset with `sharding.shards` N > 1 exports N shards in parallel (rule export_seeds_shard, this rule
# with a shard's output: sharding.smk) that rule merge_seed_shards joins into the same cams.h5.


rule export_seeds:
    input:
        dataset=dataset_input,
        model=paths.MODEL,
    output:
        paths.SEEDS,
    params:
        config=export_seeds_job,
        code=stage_code("wsss_core.stages.export_seeds"),
        shards="",  # sharding.smk: "--shard K --shards N " in export_seeds_shard
    log:
        "logs/{dataset}/{method}/export_seeds.log",
    benchmark:
        "benchmarks/{dataset}/{method}/export_seeds.tsv"
    wildcard_constraints:
        dataset=UNSHARDED,
    threads: 4
    resources:
        gpu=heavy_gpu,
        mem_mb=heavy_mem_mb,
        runtime=heavy_runtime,
        **SLURM_HEAVY,
    shell:
        "OMP_NUM_THREADS={threads} {PYTHON:q} -m wsss_core.stages.export_seeds --config {params.config:q} "
        "--runtime {RUNTIME:q} "
        "--model {input.model} {params.shards}--output {output} > {log} 2>&1"


rule evaluate_seeds:
    input:
        dataset=dataset_input,
        seeds=paths.SEEDS,
    output:
        paths.SEED_EVAL,
    params:
        config=evaluate_seeds_job,
        code=stage_code("wsss_core.stages.evaluate_seeds"),
    log:
        "logs/{dataset}/{method}/evaluate_seeds.log",
    benchmark:
        "benchmarks/{dataset}/{method}/evaluate_seeds.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "{PYTHON:q} -m wsss_core.stages.evaluate_seeds --config {params.config:q} --seeds {input.seeds} "
        "--output {output} > {log} 2>&1"
