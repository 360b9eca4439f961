# Scores on the evaluation split, and the per-method miou.json that summarises the configured route.


rule evaluate_segmentation:
    input:
        dataset=dataset_input,
        predictions=paths.PREDICTIONS,
    output:
        paths.ROUTE_RESULT,
    params:
        config=evaluate_final_job,
        code=stage_code("wsss_core.stages.evaluate_masks"),
    log:
        "logs/{dataset}/{method}/evaluate_segmentation_{route_dir}.log",
    benchmark:
        "benchmarks/{dataset}/{method}/evaluate_segmentation_{route_dir}.tsv"
    wildcard_constraints:
        route_dir=paths.ROUTE_DIRS,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "{PYTHON:q} -m wsss_core.stages.evaluate_masks --config {params.config:q} --masks {input.predictions} "
        "--output {output} > {log} 2>&1"


rule final_result:
    input:
        unpack(final_result_sources),
    output:
        paths.FINAL_RESULT,
    params:
        code=code_fingerprint("wsss_core.stages.final_result"),
        pipeline=pipeline_json,
        masks=masks_argument,
    log:
        "logs/{dataset}/{method}/final_result.log",
    benchmark:
        "benchmarks/{dataset}/{method}/final_result.tsv"
    threads: 1
    resources:
        mem_mb=SMALL_JOB_MEM_MB,
        runtime=5,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "{PYTHON:q} -m wsss_core.stages.final_result --pipeline {params.pipeline:q} --result {input.result} "
        "--seeds {input.seeds} {params.masks} --output {output} > {log} 2>&1"
