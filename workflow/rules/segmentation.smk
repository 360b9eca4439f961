# Segmentation: a DeepLab network trained on the pseudo-masks and evaluated on the evaluation split with
# multi-scale + flip + dense CRF inference; or, for end-to-end methods, the method's own decoder.


rule train_segmentation:
    input:
        dataset=dataset_input,
        masks="results/{dataset}/{method}/masks/{refine}/masks.h5",
    output:
        "results/{dataset}/{method}/seg/{refine}.{network}/model.pt",
    params:
        config=train_segmentation_job,
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
    shell:
        "OMP_NUM_THREADS={threads} {HUB_ENV} {PYTHON} -m wsss_core.stages.train_segmentation "
        "--config {params.config:q} --masks {input.masks} --output {output} > {log} 2>&1"


rule infer_segmentation:
    input:
        dataset=dataset_input,
        model="results/{dataset}/{method}/seg/{refine}.{network}/model.pt",
    output:
        "results/{dataset}/{method}/seg/{refine}.{network}/predictions.h5",
    params:
        config=infer_segmentation_job,
        code=stage_code("wsss_core.stages.infer_segmentation"),
    log:
        "logs/{dataset}/{method}/infer_segmentation_{refine}.{network}.log",
    benchmark:
        "benchmarks/{dataset}/{method}/infer_segmentation_{refine}.{network}.tsv"
    threads: 4
    resources:
        gpu=heavy_gpu,
        mem_mb=heavy_mem_mb,
        runtime=heavy_runtime,
    shell:
        "OMP_NUM_THREADS={threads} {PYTHON} -m wsss_core.stages.infer_segmentation --config {params.config:q} "
        "--model {input.model} --output {output} > {log} 2>&1"


rule infer_decoder:
    input:
        dataset=dataset_input,
        model="results/{dataset}/{method}/train/model.pt",
    output:
        "results/{dataset}/{method}/decoder/predictions.h5",
    params:
        config=infer_decoder_job,
        code=stage_code("wsss_core.stages.infer_segmentation"),
    log:
        "logs/{dataset}/{method}/infer_decoder.log",
    benchmark:
        "benchmarks/{dataset}/{method}/infer_decoder.tsv"
    threads: 4
    resources:
        gpu=heavy_gpu,
        mem_mb=heavy_mem_mb,
        runtime=heavy_runtime,
    shell:
        "OMP_NUM_THREADS={threads} {PYTHON} -m wsss_core.stages.infer_segmentation --config {params.config:q} "
        "--model {input.model} --output {output} > {log} 2>&1"
