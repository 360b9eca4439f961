"""Command-line conventions shared by the stages.

Every stage takes ``--config`` with the JSON that the Snakemake rule resolved for it (the rule passes it
as a ``params:`` entry, so a changed parameter re-runs the stage), plus its own input/output paths.
The JSON is the job's identity: the keys ``dataset``, ``method`` (if any), ``stage``, ``weights`` and
``seed``; a stage reads only what it needs. How the job runs (``num_workers``, ``device``, log and
checkpoint cadence, ...: :mod:`wsss_core.runtime`) comes as ``--runtime`` (a JSON object, not a rerun
trigger) with ``--runtime-section`` naming the job's ``stages`` section; the parser puts the job's values
under ``config["runtime"]``, which stages read with :func:`wsss_core.runtime.settings` and leave out of
what they hash (:func:`wsss_core.runtime.identity`).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wsss_core import runtime
from wsss_core.errors import InputError
from wsss_core.utils.logging_setup import setup_logging


def parse_config(value: str, option: str = "--config") -> dict[str, Any]:
    """``--config`` value: inline JSON, or ``@path`` to a JSON file."""
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{option} is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise argparse.ArgumentTypeError(f"{option} must be a JSON object")
    return config


def parse_runtime(value: str) -> dict[str, Any]:
    """``--runtime`` value: inline JSON, or ``@path`` to a JSON file."""
    return parse_config(value, "--runtime")


class StageParser(argparse.ArgumentParser):
    """An argument parser whose ``config`` holds the job's run-time values under ``config["runtime"]``."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        parsed, rest = super().parse_known_args(args, namespace)
        if isinstance(getattr(parsed, "config", None), dict):
            try:
                parsed.config = runtime.attach(parsed.config, parsed.runtime, parsed.runtime_section)
            except InputError as error:
                self.error(str(error))
        return parsed, rest


def stage_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the common ``--config`` and ``--runtime`` options."""
    parser = StageParser(description=description)
    parser.add_argument("--config", type=parse_config, required=True, help="stage configuration (JSON or @file)")
    parser.add_argument("--runtime", type=parse_runtime, default=None,
                        help="run-time settings (JSON or @file; wsss_core.runtime.workflow_runtime)")
    parser.add_argument("--runtime-section", default=None,
                        help="the job's stages section in --runtime, e.g. segmentation.deeplab_v2.train")
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
