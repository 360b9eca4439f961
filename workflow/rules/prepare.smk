# Real datasets from their downloaded archives: a dataset with `prepare: {archives: {...}}` in config.yaml
# gets one rule, prepare_<dataset>, that writes its root (VOC 2012 + SBD → SegmentationClassAug and
# train_aug; COCO 2014 → semantic PNGs, cls_labels, lists) and <root>/prepared.json last. Every job that
# reads the dataset takes that file as input (dataset_input in paths.smk), so
#   snakemake --cores 8 results/voc/cti/miou.json
# starts from the archives. Checksums, counts and the COCO mask rule: wsss_core.stages.prepare_{voc,coco}.

PREPARE_STAGES = {"voc": "wsss_core.stages.prepare_voc", "coco": "wsss_core.stages.prepare_coco"}


def prepare_archives_input(dataset):
    """The archives of a prepared dataset; a missing one stops with the archive's name and config key."""

    def archives(wildcards):
        try:
            return resolve.prepare_archives(config, dataset)
        except InputError as error:
            raise WorkflowError(f"config.yaml: {error}") from None

    return archives


def prepare_job(dataset):
    """--config JSON of a preparation job: the dataset block (with its `prepare` entry) and the seed."""
    try:
        return resolve.to_json(resolve.job_config(config, dataset, None, {}, with_weights=False))
    except InputError as error:
        raise WorkflowError(f"config.yaml: {error}") from None


for _name in [name for name in config["datasets"] if resolve.is_prepared(config, name)]:
    _stage = PREPARE_STAGES[config["datasets"][_name]["format"]]

    rule:
        name:
            f"prepare_{_name}"
        input:
            unpack(prepare_archives_input(_name)),
        output:
            resolve.prepared_marker(config, _name),
        params:
            config=prepare_job(_name),
            code=code_fingerprint(_stage),
            stage=_stage,
        log:
            f"logs/{_name}/prepare.log",
        benchmark:
            f"benchmarks/{_name}/prepare.tsv"
        threads: 1
        resources:
            mem_mb=8000,
            runtime=720,
            gpu=0,
            **SLURM_LIGHT,
        shell:
            "{PYTHON:q} -m {params.stage} --config {params.config:q} --output {output} > {log} 2>&1"
