# Training of a method's network: a classifier (multi-stage methods) or an end-to-end model. Resumes
# from results/.../train/_state/last.pt when re-run after a crash or a kill.


rule train_method:
    input:
        dataset=dataset_input,
        weights=get_weight_files(train_job),
    output:
        paths.MODEL,
    params:
        config=train_distributed_job,
        code=stage_code("wsss_core.stages.train_method"),
    log:
        "logs/{dataset}/{method}/train_method.log",
    benchmark:
        "benchmarks/{dataset}/{method}/train_method.tsv"
    threads: 8
    resources:
        gpu=heavy_gpu,
        mem_mb=heavy_mem_mb,
        runtime=heavy_runtime,
        **SLURM_HEAVY,
    shell:
        "OMP_NUM_THREADS={threads} {HUB_ENV} {PYTHON:q} -m wsss_core.stages.train_method "
        "--config {params.config:q} --runtime {RUNTIME:q} --runtime-section train_method --output {output} > {log} 2>&1"


rule evaluate_classifier:
    """Classification mAP of each head of the trained network on the score split: a chain whose
    classifier has not learned the labels is visible before its seeds are read."""
    input:
        model=paths.MODEL,
    output:
        paths.CLASSIFICATION,
    params:
        config=evaluate_classifier_job,
        code=stage_code("wsss_core.stages.evaluate_classifier"),
    log:
        "logs/{dataset}/{method}/evaluate_classifier.log",
    benchmark:
        "benchmarks/{dataset}/{method}/evaluate_classifier.tsv"
    threads: 2
    resources:
        gpu=heavy_gpu,
        mem_mb=heavy_mem_mb,
        runtime=30,
        **SLURM_HEAVY,
    shell:
        "OMP_NUM_THREADS={threads} {PYTHON:q} -m wsss_core.stages.evaluate_classifier --config {params.config:q} "
        "--runtime {RUNTIME:q} --model {input.model} --output {output} > {log} 2>&1"
