# Checks before anything else is parsed (wsss_core.workflow_checks): what Snakemake would otherwise get
# wrong silently or report with a wall of text. Included first by the Snakefile.

import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from wsss_core.workflow_checks import profile_conflict

# `--profile profiles/slurm` also loads profiles/default, whose local GPU cap would win on the cluster.
if workflow.is_main_process:
    _conflict = profile_conflict(sys.argv[1:], os.environ, Path.cwd(), Path(workflow.main_snakefile).parent)
    if _conflict:
        raise WorkflowError(_conflict)
