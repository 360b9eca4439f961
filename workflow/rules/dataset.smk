# The embedded synthetic dataset, written in the PASCAL VOC 2012 layout (read back by the VOC reader).


rule synth_dataset:
    output:
        directory("results/{dataset}/dataset"),
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
