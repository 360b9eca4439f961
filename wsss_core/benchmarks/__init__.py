"""Benchmarks run as ``python -m wsss_core.benchmarks.<name>``; each prints one JSON report."""
