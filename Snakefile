# Weakly supervised semantic segmentation from image-level labels: the whole chain as one DAG.
#
#   snakemake --cores 8 results/voc/cti/miou.json         # a method on VOC (needs VOC on disk)
#   snakemake --cores 2 results/synth/cti/miou.json       # the embedded synthetic dataset, CPU, minutes
#
# Rules live in workflow/rules/<stage>.smk; every rule calls one stage module, `python -m wsss_core.stages.X`.
# Before them: checks.smk (what would go wrong silently), config.smk (config.yaml validated and resolved),
# resources.smk (GPUs, memory, SLURM), paths.smk (input functions over wsss_core.artefacts), jobs.smk (each
# job's --config identity and code fingerprint).

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/checks.smk"
include: "workflow/rules/config.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/paths.smk"
include: "workflow/rules/jobs.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/seeds.smk"
include: "workflow/rules/refine.smk"
include: "workflow/rules/segmentation.smk"
include: "workflow/rules/sharding.smk"
include: "workflow/rules/results.smk"
include: "workflow/rules/ablation.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        config["default_targets"],
    default_target: True
