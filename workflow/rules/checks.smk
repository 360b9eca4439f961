# Checks before anything else is parsed (wsss_core.workflow_checks): what Snakemake would otherwise get
# wrong silently or report with a wall of text. Included first by the Snakefile.

import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from wsss_core.workflow_checks import (
    command_line_targets,
    device_problem,
    profile_conflict,
    schema_problem,
    target_problem,
)

# config.yaml against its schema, in one line (config.smk validates again and fills in the defaults).
_problem = schema_problem(config, Path(workflow.main_snakefile).parent / "workflow" / "schemas" / "config.schema.yaml")
if _problem:
    raise WorkflowError(_problem)

if workflow.is_main_process:
    # `--profile profiles/slurm` also loads profiles/default, whose local GPU cap would win on the cluster.
    _problem = profile_conflict(sys.argv[1:], os.environ, Path.cwd(), Path(workflow.main_snakefile).parent)
    # a target naming an unknown method, variant, refinement or network: list the known ones
    for _target in command_line_targets(sys.argv[1:]):
        _problem = _problem or target_problem(config, _target)
    # device: cuda for jobs that run here, on a machine without that GPU: stop now, not inside the first job
    _problem = _problem or device_problem(config, sys.argv[1:], os.environ, Path.cwd())
    if _problem:
        raise WorkflowError(_problem)
