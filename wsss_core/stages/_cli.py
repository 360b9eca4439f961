"""Command-line conventions shared by the stages.

Every stage takes ``--config`` with the JSON that the Snakemake rule resolved for it (the rule passes it
as a ``params:`` entry, so a changed parameter re-runs the stage), plus its own input/output paths.
The JSON has the keys ``dataset``, ``method`` (if any), ``stage``, ``weights``, ``seed``, ``device``
and ``num_workers``; a stage reads only what it needs.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wsss_core.errors import InputError
from wsss_core.utils.logging_setup import setup_logging


def parse_config(value: str) -> dict[str, Any]:
    """``--config`` value: inline JSON, or ``@path`` to a JSON file."""
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"--config is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise argparse.ArgumentTypeError("--config must be a JSON object")
    return config


def stage_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the common ``--config`` option."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", type=parse_config, required=True, help="stage configuration (JSON or @file)")
    return parser


INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


def run(main: Callable[[], None]) -> None:
    """Run a stage's ``main`` with logging set up; bad-input errors (which name the file or key and
    the fix) are printed as one line instead of a traceback, and so is Ctrl-C (outputs are written
    atomically, so nothing half-written is left; a training stage resumes from its last checkpoint)."""
    log = setup_logging()
    try:
        main()
    except InputError as error:
        log.error("%s: %s", type(error).__name__, error)
        logging.shutdown()
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        log.error("interrupted (Ctrl-C): nothing half-written is left; re-run to continue")
        logging.shutdown()
        raise SystemExit(INTERRUPTED_EXIT_CODE) from None
