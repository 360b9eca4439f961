"""Logging for stages: one line format, to stderr (which the Snakemake rule redirects to ``log:``)."""

from __future__ import annotations

import logging


def setup_logging(level: int = logging.INFO) -> logging.Logger:
    """Configure the root logger once and return the ``wsss_core`` logger."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        force=True,
    )
    return logging.getLogger("wsss_core")
