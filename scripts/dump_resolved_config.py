"""Every resolved configuration the workflow hands to a job, as one JSON document (key-sorted).

For each dataset (and each preset set synth/voc/coco) and each run (method or variant): the method's
resolved params, its pipeline choice, each refinement's and the decoder's parameters; for each dataset,
every stage section. Run it with two checkouts to prove that a refactoring of the configuration left
every job's values unchanged:

    (cd /path/to/old && PYTHONPATH=$PWD python /path/to/new/scripts/dump_resolved_config.py) > old.json
    PYTHONPATH=$PWD python scripts/dump_resolved_config.py > new.json && cmp old.json new.json

or in one step against a commit of this repository (its tree is extracted with ``git archive`` and dumped
with its own code and config.yaml; the differing key paths are listed, exit status 1 if any):

    PYTHONPATH=$PWD python scripts/dump_resolved_config.py --against main

Only functions that exist on both sides are used (wsss_core.workflow_config); a value that cannot be
resolved is recorded as its error message. Keys renamed since (``RENAMES``: one name per concept, issue 14
item 2) are renamed in the other commit's dump before the comparison, and blocks moved since (``moved``:
``stages.refine.crf.crf`` → ``stages.refine.crf``) moved, so that only values are compared; ``--strict``
compares the names too. ``job.refine_crf`` is what stage refine_crf receives (compared as it is).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
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
            # what stage refine_crf receives (before refine_crf_params existed: stages.refine.crf as it was)
            crf_job = getattr(resolve, "refine_crf_params", lambda c, d, r: resolve.refine_params(c, d, r, "crf"))
            entry["job.refine_crf"] = _try(crf_job, config, dataset, run)
            out["runs"][f"{dataset}/{run}"] = entry
        sections = {}
        for name, node in sorted(stages.items()):
            sections[name] = _try(resolve.stage_params, config, dataset, name)
            if name in ("refine", "segmentation", "ablations"):
                for sub in sorted(node):
                    sections[f"{name}.{sub}"] = _try(resolve.stage_params, config, dataset, name, sub)
        out["stages"][dataset] = sections
    return out


# old key -> new key, at any depth (issue 14, item 2: one name per concept)
RENAMES = {
    "backbone_overrides": "backbone_args",  # cam, swtformer(_v1), vitpcm, stages.refine.irn, stages.segmentation
    "infer": "inference",                   # cam, swtformer(_v1), vitpcm (toco, afa, eca said inference)
}


def renamed(value: object) -> object:
    """``value`` with the keys of ``RENAMES`` renamed, at any depth."""
    if isinstance(value, dict):
        return {RENAMES.get(key, key): renamed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [renamed(item) for item in value]
    return value


def moved(dump: dict) -> dict:
    """An older dump with the blocks moved since: the CRF parameters of ``stages.refine.crf.crf`` (and of a
    method's ``refine_overrides.crf.crf``) directly under ``stages.refine.crf`` (issue 14, item 2: no
    ``crf: {crf: ...}``). The jobs' view (``job.refine_crf``) is left as it is: the job keeps that shape."""
    def up(block: object) -> object:
        if isinstance(block, dict) and isinstance(block.get("crf"), dict):
            return {**{key: value for key, value in block.items() if key != "crf"}, **block["crf"]}
        return block

    for entry in dump.get("runs", {}).values():
        entry["refine.crf"] = up(entry.get("refine.crf"))
        overrides = (entry.get("pipeline") or {}).get("refine_overrides")
        if isinstance(overrides, dict) and "crf" in overrides:
            overrides["crf"] = up(overrides["crf"])
    for sections in dump.get("stages", {}).values():
        if isinstance(sections.get("refine"), dict) and "crf" in sections["refine"]:
            sections["refine"]["crf"] = up(sections["refine"]["crf"])
        if "refine.crf" in sections:
            sections["refine.crf"] = up(sections["refine.crf"])
    return dump


def differences(old: object, new: object, where: str = "") -> list[str]:
    """Key paths at which two dumps differ (lists of equal length element by element), with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            path = f"{where}.{key}" if where else key
            if key not in old or key not in new:
                found.append(f"{path} ({'added' if key not in old else 'removed'})")
            else:
                found += differences(old[key], new[key], path)
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [path for index, (a, b) in enumerate(zip(old, new)) for path in differences(a, b, f"{where}[{index}]")]
    return [] if old == new else [f"{where}: {str(old)[:120]} -> {str(new)[:120]}"]


def run_at(ref: str, script: Path, arguments: list[str]) -> subprocess.CompletedProcess:
    """``script`` (this checkout's) run against commit ``ref``'s code and config.yaml (a ``git archive``
    in a temporary folder, first on PYTHONPATH); its stdout is the other side of a comparison."""
    with tempfile.TemporaryDirectory() as folder:
        archive = subprocess.run(["git", "archive", ref], cwd=Path(__file__).resolve().parents[1],
                                 capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
        return subprocess.run([sys.executable, str(script), *arguments], cwd=folder,
                              env={**os.environ, "PYTHONPATH": folder}, capture_output=True, text=True)


def against(ref: str, strict: bool = False) -> int:
    result = run_at(ref, Path(__file__).resolve(), [])
    if result.returncode:
        raise SystemExit(result.stderr[-4000:])
    old = result.stdout
    new = dump(yaml.safe_load(Path("config.yaml").read_text()))
    old_dump = json.loads(old) if strict else moved(renamed(json.loads(old)))
    found = differences(old_dump, json.loads(json.dumps(new)))
    runs = len(new["runs"])
    mapped = "" if strict else (f" (keys renamed since: {', '.join(f'{a} -> {b}' for a, b in RENAMES.items())}; "
                                "stages.refine.crf.crf.* -> stages.refine.crf.*)")
    print(f"{runs} dataset x run entries and {len(new['stages'])} datasets' stage sections compared with {ref}"
          f"{mapped}: {len(found)} difference(s)")
    for path in found:
        print("  " + path)
    return 1 if found else 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--against":
        sys.exit(against(sys.argv[2], strict="--strict" in sys.argv[3:]))
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("config.yaml")
    print(json.dumps(dump(yaml.safe_load(path.read_text())), sort_keys=True, indent=1))
