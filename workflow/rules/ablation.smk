# Ablation tables of seed quality (CTI's Table 1 structure): every row is a real training run of a method
# or variant, scored by evaluate_seeds. Rows and labels come from stages.ablations.<name> in config.yaml.


rule ablation_table:
    input:
        unpack(ablation_inputs),
    output:
        markdown=paths.ABLATION,
        table=paths.ABLATION_TABLE,
    params:
        config=ablation_job,
        rows=ablation_rows_argument,
        code=code_fingerprint("wsss_core.stages.ablation_table"),
    log:
        "logs/{dataset}/{ablation}/ablation_table.log",
    benchmark:
        "benchmarks/{dataset}/{ablation}/ablation_table.tsv"
    wildcard_constraints:
        ablation="|".join(config["stages"].get("ablations", {})) or "no_ablation_configured",
    threads: 1
    resources:
        mem_mb=SMALL_JOB_MEM_MB,
        runtime=5,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "{PYTHON:q} -m wsss_core.stages.ablation_table --config {params.config:q} --rows {params.rows} "
        "--output {output.markdown} > {log} 2>&1"
