# Pretrained stand-ins for the synthetic presets: a pool of object-centric images of many classes (the
# ImageNet stand-in), and one backbone per family trained on it (supervised, or DINO for ECA's guide).
# The methods load the results through weights.files exactly as they load real checkpoints; every job
# whose configuration names such a key gets the file as an input (get_weight_files in jobs.smk).


rule pretrain_pool:
    output:
        train=paths.PRETRAIN_POOL_TRAIN,
        val=paths.PRETRAIN_POOL_VAL,
        classes=paths.PRETRAIN_POOL_CLASSES,
    params:
        config=pretrain_pool_job,
        code=code_fingerprint("wsss_core.stages.pretrain_pool"),
    log:
        "logs/synth/pretrain_pool.log",
    benchmark:
        "benchmarks/synth/pretrain_pool.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "{PYTHON:q} -m wsss_core.stages.pretrain_pool --config {params.config:q} --workers {POOL_WORKERS} "
        "--output results/synth/pretrain_pool > {log} 2>&1"


def pretrain_backbone_identity(wildcards):
    """--config of one backbone's job: its recipe less the run-time keys (log_every, which travels in
    --runtime under the section pretraining.backbones.<name>), the pool's identity and the seed."""
    return resolve.to_json(resolve.pretrain_backbone_job(config, wildcards.backbone))


rule pretrain_backbone:
    input:
        rules.pretrain_pool.output,
    output:
        weights=paths.PRETRAINED_WEIGHTS,
        report=paths.PRETRAINED_REPORT,
    params:
        config=pretrain_backbone_identity,
        code=code_fingerprint("wsss_core.stages.pretrain_backbone"),
    log:
        "logs/synth/pretrain_{backbone}.log",
    benchmark:
        "benchmarks/synth/pretrain_{backbone}.tsv"
    wildcard_constraints:
        backbone="|".join(PRETRAINED_BACKBONES) or "no_pretrained_backbone",
    threads: 8
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=0,
        **SLURM_LIGHT,
    shell:
        "OMP_NUM_THREADS={threads} {PYTHON:q} -m wsss_core.stages.pretrain_backbone --config {params.config:q} "
        "--runtime {RUNTIME:q} --runtime-section pretraining.backbones.{wildcards.backbone} "
        "--pool results/synth/pretrain_pool --output {output.weights} --report {output.report} > {log} 2>&1"
