"""One module per Snakemake rule. Each has ``main(argv)`` and runs as ``python -m wsss_core.stages.X``."""
