# Results people can read: the summary table of a dataset, and the figures (sample grids, per-class IoU,
# training curves). Which runs they cover is config (stages.reporting.runs), so the DAG stays static.
# `snakemake --report report.html results/<dataset>/figures/index.md` collects every output wrapped in
# report() below (rule figure_index depends on all of them);
# reporting_targets(dataset) in paths.smk lists them all.


rule summary:
    input:
        summary_input,
    output:
        markdown=paths.SUMMARY,
        table=report(
            paths.SUMMARY_TABLE,
            caption="../report/summary.rst",
            category="{dataset}",
            subcategory="summary",
            labels={"table": "summary (CSV)"},
        ),
        page=report(
            paths.SUMMARY_PAGE,
            caption="../report/summary.rst",
            category="{dataset}",
            subcategory="summary",
            labels={"table": "summary"},
        ),
    params:
        config=summary_job,
        code=code_fingerprint("wsss_core.stages.summary"),
        runs=summary_run_dirs,
    log:
        "logs/{dataset}/summary.log",
    benchmark:
        "benchmarks/{dataset}/summary.tsv"
    threads: 1
    resources:
        mem_mb=SMALL_JOB_MEM_MB,
        runtime=10,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "{PYTHON:q} -m wsss_core.stages.summary --config {params.config:q} --runs {params.runs} "
        "--benchmarks benchmarks/{wildcards.dataset} --output {output.markdown} > {log} 2>&1"


rule class_iou_chart:
    input:
        class_iou_input,
    output:
        report(
            paths.CLASS_IOU_CHART,
            caption="../report/class_iou_chart.rst",
            category="{dataset}",
            subcategory="per-class IoU",
            labels={"figure": "per-class IoU, all runs"},
        ),
    params:
        config=class_iou_job,
        code=code_fingerprint("wsss_core.stages.figures"),
        scores=class_iou_scores,
    log:
        "logs/{dataset}/class_iou_chart.log",
    benchmark:
        "benchmarks/{dataset}/class_iou_chart.tsv"
    threads: 1
    resources:
        mem_mb=SMALL_JOB_MEM_MB,
        runtime=10,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "{PYTHON:q} -m wsss_core.stages.figures class-iou --config {params.config:q} --scores {params.scores} "
        "--output {output} > {log} 2>&1"


rule sample_grid:
    input:
        unpack(sample_grid_input),
    output:
        report(
            paths.SAMPLE_GRID,
            caption="../report/sample_grid.rst",
            category="{dataset}",
            subcategory="samples",
            labels={"run": "{method}", "figure": "samples"},
        ),
    params:
        config=sample_grid_job,
        code=code_fingerprint("wsss_core.stages.figures"),
        masks=sample_grid_masks_option,
    log:
        "logs/{dataset}/{method}/sample_grid.log",
    benchmark:
        "benchmarks/{dataset}/{method}/sample_grid.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "{PYTHON:q} -m wsss_core.stages.figures samples --config {params.config:q} --seeds {input.seeds} "
        "--seed-eval {input.seed_eval} {params.masks} --predictions {input.predictions} --output {output} "
        "> {log} 2>&1"


rule training_curves:
    input:
        unpack(training_curves_input),
    output:
        report(
            paths.TRAINING_CURVES,
            caption="../report/training_curves.rst",
            category="{dataset}",
            subcategory="training curves",
            labels={"run": "{method}", "figure": "training curves"},
        ),
    params:
        config=training_curves_job,
        code=code_fingerprint("wsss_core.stages.figures"),
        segmentation=segmentation_model_option,
    log:
        "logs/{dataset}/{method}/training_curves.log",
    benchmark:
        "benchmarks/{dataset}/{method}/training_curves.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "{PYTHON:q} -m wsss_core.stages.figures training --config {params.config:q} --model {input.model} "
        "--seed-eval {input.seed_eval} {params.segmentation} --output {output} > {log} 2>&1"


rule figure_index:
    input:
        summary=paths.SUMMARY,
        figures=reporting_figures,
    output:
        paths.FIGURE_INDEX,
    params:
        config=figure_index_job,
        code=code_fingerprint("wsss_core.stages.figure_index"),
    log:
        "logs/{dataset}/figure_index.log",
    benchmark:
        "benchmarks/{dataset}/figure_index.tsv"
    threads: 1
    resources:
        mem_mb=SMALL_JOB_MEM_MB,
        runtime=5,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "{PYTHON:q} -m wsss_core.stages.figure_index --config {params.config:q} --summary {input.summary} "
        "--figures {input.figures} --output {output} > {log} 2>&1"


rule compare_seeds:
    # comparisons.md: whole chains (seed, mask, final mIoU); comparisons_seeds.md: the seed level alone
    input:
        comparison_inputs,
    output:
        report(
            paths.COMPARISONS,
            caption="../report/summary.rst",
            category="{dataset}",
            subcategory="summary",
            labels={"table": "comparisons over seeds{level}"},
        ),
    wildcard_constraints:
        level="|_seeds",
    params:
        config=comparison_job,
        runs=comparison_argument,
        code=code_fingerprint("wsss_core.stages.compare_seeds"),
    log:
        "logs/{dataset}/compare_seeds{level}.log",
    benchmark:
        "benchmarks/{dataset}/compare_seeds{level}.tsv"
    threads: 1
    resources:
        mem_mb=SMALL_JOB_MEM_MB,
        runtime=10,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "{PYTHON:q} -m wsss_core.stages.compare_seeds --config {params.config:q} --runs {params.runs} "
        "--output {output} > {log} 2>&1"
