# Training of a method's network: a classifier (multi-stage methods) or an end-to-end model. Resumes
# from results/.../train/_state/last.pt when re-run after a crash or a kill.


rule train_method:
    input:
        dataset=dataset_input,
        weights=get_weight_files(train_job),
    output:
        "results/{dataset}/{method}/train/model.pt",
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
        "--config {params.config:q} --output {output} > {log} 2>&1"
