# Seeds → pseudo-masks. `pipeline.refine` of a method picks crf, irn or psa; each writes a mask store
# for the training split, scored on the score split (a subset of it).


rule refine_crf:
    input:
        dataset=dataset_input,
        seeds="results/{dataset}/{method}/seeds/cams.h5",
        seed_eval="results/{dataset}/{method}/seeds/eval.json",
    output:
        "results/{dataset}/{method}/masks/crf/masks.h5",
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
    shell:
        "{PYTHON} -m wsss_core.stages.refine_crf --config {params.config:q} --seeds {input.seeds} "
        "--seed-eval {input.seed_eval} --output {output} > {log} 2>&1"


rule evaluate_masks:
    input:
        dataset=dataset_input,
        masks="results/{dataset}/{method}/masks/{refine}/masks.h5",
    output:
        "results/{dataset}/{method}/masks/{refine}/eval.json",
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
    shell:
        "{PYTHON} -m wsss_core.stages.evaluate_masks --config {params.config:q} --masks {input.masks} "
        "--output {output} > {log} 2>&1"
