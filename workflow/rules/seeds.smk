# CAM seeds: export to the HDF5 seed store, and their evaluation (background-threshold sweep, P/R).


rule export_seeds:
    input:
        dataset=dataset_input,
        model="results/{dataset}/{method}/train/model.pt",
    output:
        "results/{dataset}/{method}/seeds/cams.h5",
    params:
        config=export_seeds_job,
        code=stage_code("wsss_core.stages.export_seeds"),
    log:
        "logs/{dataset}/{method}/export_seeds.log",
    benchmark:
        "benchmarks/{dataset}/{method}/export_seeds.tsv"
    threads: 4
    resources:
        gpu=heavy_gpu,
        mem_mb=heavy_mem_mb,
        runtime=heavy_runtime,
    shell:
        "OMP_NUM_THREADS={threads} {PYTHON} -m wsss_core.stages.export_seeds --config {params.config:q} "
        "--model {input.model} --output {output} > {log} 2>&1"


rule evaluate_seeds:
    input:
        dataset=dataset_input,
        seeds="results/{dataset}/{method}/seeds/cams.h5",
    output:
        "results/{dataset}/{method}/seeds/eval.json",
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
    shell:
        "{PYTHON} -m wsss_core.stages.evaluate_seeds --config {params.config:q} --seeds {input.seeds} "
        "--output {output} > {log} 2>&1"
