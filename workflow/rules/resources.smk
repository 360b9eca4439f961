# What each job asks of the machine: the heavy rules' GPUs, memory and runtime (config `compute.<dataset>`),
# torchrun workers for multi-GPU training, and the SLURM placement (config `slurm:`, profiles/slurm).


def heavy_gpu(wildcards):
    return int(resolve.compute_resources(config, wildcards.dataset)["gpu"])


def heavy_mem_mb(wildcards):
    return int(resolve.compute_resources(config, wildcards.dataset)["mem_mb"])


def heavy_runtime(wildcards):
    return int(resolve.compute_resources(config, wildcards.dataset)["runtime"])


def training_processes(wildcards):
    """torchrun workers of a training job: the GPUs its rule asks for (one process on CPU)."""
    return max(heavy_gpu(wildcards), 1)


def _slurm(key, default=""):
    return (config.get("slurm") or {}).get(key, default)


def slurm_account(wildcards):
    return str(_slurm("account") or "")


def slurm_heavy_partition(wildcards):
    """The GPU partition for a heavy rule that gets GPUs on this dataset, else the CPU partition."""
    return str(_slurm("gpu_partition") if heavy_gpu(wildcards) else _slurm("cpu_partition"))


def slurm_light_partition(wildcards):
    return str(_slurm("cpu_partition") or "")


def slurm_gpu_model(wildcards):
    """--gpus=<model>:N; empty for CPU jobs (a model alone would make the plugin ask for one GPU)."""
    return str(_slurm("gpu_model") or "") if heavy_gpu(wildcards) else ""


def slurm_cpus_per_gpu(wildcards):
    return int(_slurm("cpus_per_gpu", 0) or 0) if heavy_gpu(wildcards) else 0


# The memory of the smallest jobs (summaries, tables, final_result). Under SLURM each job runs Snakemake
# itself, which parses this workflow before the stage starts and stays alive while it runs; the parse
# imports torch and timm through the method registry (peak RSS 0.95 GB: `/usr/bin/time -v snakemake -n`),
# so a 1000 MB job was killed by the cgroup limit (1015 MiB used). No rule asks for less than this.
SMALL_JOB_MEM_MB = 2000


# `resources: ..., **SLURM_HEAVY` in the GPU-capable rules, `**SLURM_LIGHT` in the CPU rules.
SLURM_HEAVY = {
    "slurm_partition": slurm_heavy_partition,
    "slurm_account": slurm_account,
    "gpu_model": slurm_gpu_model,
    "cpus_per_gpu": slurm_cpus_per_gpu,
}
SLURM_LIGHT = {"slurm_partition": slurm_light_partition, "slurm_account": slurm_account}
