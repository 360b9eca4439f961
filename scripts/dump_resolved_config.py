"""Every resolved configuration the workflow hands to a job, as one JSON document (key-sorted).

For each dataset (and each preset set synth/voc/coco) and each run (method or variant): the method's
resolved params, its pipeline choice, each refinement's and the decoder's parameters; for each dataset,
every stage section. Run it with two checkouts to prove that a refactoring of the configuration left
every job's values unchanged:

    (cd /path/to/old && PYTHONPATH=$PWD python /path/to/new/scripts/dump_resolved_config.py) > old.json
    PYTHONPATH=$PWD python scripts/dump_resolved_config.py > new.json && cmp old.json new.json

Only functions that exist on both sides are used (wsss_core.workflow_config); a value that cannot be
resolved is recorded as its error message.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from wsss_core import workflow_config as resolve


def _try(function, *args):
    try:
        return function(*args)
    except Exception as error:  # recorded, compared like any value
        return {"error": f"{type(error).__name__}: {error}"}


def dump(config: dict) -> dict:
    datasets = sorted(set(config["datasets"]) | {"synth", "voc", "coco"})
    stages = config.get("stages", {})
    out: dict = {"runs": {}, "stages": {}}
    for dataset in datasets:
        for run in resolve.run_names(config):
            entry = {
                "method": _try(resolve.method_config, config, dataset, run),
                "pipeline": _try(resolve.pipeline_choice, config, dataset, run),
                "decoder": _try(resolve.decoder_params, config, dataset, run),
            }
            for refine in sorted(stages.get("refine", {})):
                entry[f"refine.{refine}"] = _try(resolve.refine_params, config, dataset, run, refine)
            out["runs"][f"{dataset}/{run}"] = entry
        sections = {}
        for name, node in sorted(stages.items()):
            sections[name] = _try(resolve.stage_params, config, dataset, name)
            if name in ("refine", "segmentation", "ablations"):
                for sub in sorted(node):
                    sections[f"{name}.{sub}"] = _try(resolve.stage_params, config, dataset, name, sub)
        out["stages"][dataset] = sections
    return out


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("config.yaml")
    print(json.dumps(dump(yaml.safe_load(path.read_text())), sort_keys=True, indent=1))
