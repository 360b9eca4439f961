# Seeds → pseudo-masks. `pipeline.refine` of a method picks crf, irn, psa or own (a single-stage method's
# PAR/CARM labels); each writes a mask store for the training split, scored on the score split (a subset of it).


rule refine_crf:
    input:
        dataset=dataset_input,
        seeds=paths.SEEDS,
        seed_eval=paths.SEED_EVAL,
    output:
        paths.path(paths.MASKS, refine="crf"),
    params:
        config=refine_crf_job,
        code=stage_code("wsss_core.stages.refine_crf"),
    log:
        "logs/{dataset}/{method}/refine_crf.log",
    benchmark:
        "benchmarks/{dataset}/{method}/refine_crf.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=heavy_runtime,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "{PYTHON:q} -m wsss_core.stages.refine_crf --config {params.config:q} "
        "--runtime {RUNTIME:q} --seeds {input.seeds} "
        "--seed-eval {input.seed_eval} --output {output} > {log} 2>&1"


rule export_pseudo_labels:
    input:
        dataset=dataset_input,
        model=paths.MODEL,
    output:
        paths.path(paths.MASKS, refine="own"),
    params:
        config=export_pseudo_labels_job,
        code=stage_code("wsss_core.stages.export_pseudo_labels"),
    log:
        "logs/{dataset}/{method}/export_pseudo_labels.log",
    benchmark:
        "benchmarks/{dataset}/{method}/export_pseudo_labels.tsv"
    threads: 4
    resources:
        gpu=heavy_gpu,
        mem_mb=heavy_mem_mb,
        runtime=heavy_runtime,
        **SLURM_HEAVY,
    shell:
        "OMP_NUM_THREADS={threads} {PYTHON:q} -m wsss_core.stages.export_pseudo_labels --config {params.config:q} "
        "--runtime {RUNTIME:q} "
        "--model {input.model} --output {output} > {log} 2>&1"


rule evaluate_masks:
    input:
        dataset=dataset_input,
        masks=paths.MASKS,
    output:
        paths.MASK_EVAL,
    params:
        config=evaluate_masks_job,
        code=stage_code("wsss_core.stages.evaluate_masks"),
    log:
        "logs/{dataset}/{method}/evaluate_masks_{refine}.log",
    benchmark:
        "benchmarks/{dataset}/{method}/evaluate_masks_{refine}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "{PYTHON:q} -m wsss_core.stages.evaluate_masks --config {params.config:q} --masks {input.masks} "
        "--output {output} > {log} 2>&1"


# IRN and PSA: relation labels from the seeds (CRF at two thresholds), an affinity network trained on
# them, and the random walk that turns seeds into pseudo-masks. Settings: stages.refine.{irn,psa}.


rule affinity_labels:
    input:
        dataset=dataset_input,
        seeds=paths.SEEDS,
    output:
        paths.RELATION_LABELS,
    params:
        config=affinity_labels_job,
        code=stage_code("wsss_core.stages.affinity_labels"),
    log:
        "logs/{dataset}/{method}/affinity_labels_{refine}.log",
    benchmark:
        "benchmarks/{dataset}/{method}/affinity_labels_{refine}.tsv"
    wildcard_constraints:
        refine="irn|psa",
    threads: 2
    resources:
        mem_mb=8000,
        runtime=heavy_runtime,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "{PYTHON:q} -m wsss_core.stages.affinity_labels --config {params.config:q} "
        "--runtime {RUNTIME:q} --seeds {input.seeds} "
        "--output {output} > {log} 2>&1"


rule train_affinity:
    input:
        dataset=dataset_input,
        labels=paths.RELATION_LABELS,
        weights=get_weight_files(train_affinity_job),
    output:
        paths.AFFINITY_MODEL,
    params:
        config=train_affinity_job,
        code=stage_code("wsss_core.stages.train_affinity"),
    log:
        "logs/{dataset}/{method}/train_affinity_{refine}.log",
    benchmark:
        "benchmarks/{dataset}/{method}/train_affinity_{refine}.tsv"
    wildcard_constraints:
        refine="irn|psa",
    threads: 8
    resources:
        gpu=heavy_gpu,
        **SLURM_HEAVY,
        mem_mb=heavy_mem_mb,
        runtime=heavy_runtime,
    shell:
        "OMP_NUM_THREADS={threads} {HUB_ENV} {PYTHON:q} -m wsss_core.stages.train_affinity --config {params.config:q} "
        "--runtime {RUNTIME:q} --runtime-section refine.{wildcards.refine}.train --labels {input.labels} "
        "--output {output} > {log} 2>&1"


rule refine_random_walk:
    input:
        dataset=dataset_input,
        seeds=paths.SEEDS,
        model=paths.AFFINITY_MODEL,
    output:
        paths.MASKS,
    params:
        config=refine_random_walk_job,
        code=stage_code("wsss_core.stages.refine_random_walk"),
    log:
        "logs/{dataset}/{method}/refine_random_walk_{refine}.log",
    benchmark:
        "benchmarks/{dataset}/{method}/refine_random_walk_{refine}.tsv"
    wildcard_constraints:
        refine="irn|psa",
    threads: 4
    resources:
        gpu=heavy_gpu,
        **SLURM_HEAVY,
        mem_mb=heavy_mem_mb,
        runtime=heavy_runtime,
    shell:
        "OMP_NUM_THREADS={threads} {PYTHON:q} -m wsss_core.stages.refine_random_walk --config {params.config:q} "
        "--runtime {RUNTIME:q} --seeds {input.seeds} --model {input.model} --output {output} > {log} 2>&1"
