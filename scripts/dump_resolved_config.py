"""Every resolved configuration the workflow hands to a job, as one JSON document (key-sorted).

For each dataset (and each preset set synth/voc/coco) and each run (method or variant): the method's
resolved params, its pipeline choice, each refinement's and the decoder's parameters; for each dataset,
every stage section. Run it with two checkouts to prove that a refactoring of the configuration left
every job's values unchanged:

    (cd /path/to/old && PYTHONPATH=$PWD python /path/to/new/scripts/dump_resolved_config.py) > old.json
    PYTHONPATH=$PWD python scripts/dump_resolved_config.py > new.json && cmp old.json new.json

``--config-of <ref>`` resolves that commit's config.yaml and this one with this checkout's code (an edit of
config.yaml alone), or in one step against a commit of this repository (its tree is extracted with ``git archive`` and dumped
with its own code and config.yaml; the differing key paths are listed, exit status 1 if any):

    PYTHONPATH=$PWD python scripts/dump_resolved_config.py --against main

Only functions that exist on both sides are used (wsss_core.workflow_config); a value that cannot be
resolved is recorded as its error message. Keys renamed since (``RENAMES``: one name per concept, issue 14
item 2) and method keys moved since (``MOVES``: old key path -> new key path per method, one shape for every
method block) are renamed or moved in the other commit's dump before the comparison, and blocks moved since
(``moved``: ``stages.refine.crf.crf`` → ``stages.refine.crf``) moved, so that only values are compared;
``--strict`` compares the names too. ``job.refine_crf`` is what stage refine_crf receives (compared as it is).
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


# old key path -> new key path inside a resolved method block, per method (issue 14 item 2: one shape
# model / train / losses / seeds / inference for every method; docs/design.md has the table). Applied in
# order, after RENAMES; MCC takes ToCo's moves and ECA AFA's, as their blocks extend those.
_SINGLE_STAGE = [
    ("backbone", "model.backbone"), ("weights", "model.weights"), ("backbone_args", "model.backbone_args"),
    ("decoder", "model.decoder"),
    ("crop_size", "train.crop_size"), ("rescale_range", "train.rescale_range"),
    ("loss_weights", "losses.weights"), ("schedule", "losses.schedule"), ("thresholds", "losses.thresholds"),
    ("par", "losses.par"),
    ("cam_scales", "seeds.scales"), ("inference.seed_resize", "seeds.resize"),
]
_AFA = _SINGLE_STAGE + [("affinity", "losses.affinity"), ("propagation", "losses.propagation")]
_TOCO = _SINGLE_STAGE + [
    ("aux_layer", "model.aux_layer"), ("freeze_pos_embed", "model.freeze_pos_embed"),
    ("projector", "model.projector"), ("affinity_box_units", "losses.affinity_box_units"),
    ("contrast", "losses.contrast"),
]
_SWTFORMER_V1 = [
    ("backbone", "model.backbone"), ("weights", "model.weights"), ("backbone_args", "model.backbone_args"),
    ("image_mean", "model.image_mean"), ("image_std", "model.image_std"), ("inference", "seeds"),
]
MOVES: dict[str, list[tuple[str, str]]] = {
    "cam": _SWTFORMER_V1 + [("frozen_stages", "model.frozen_stages"), ("batch_norm", "model.batch_norm")],
    "swtformer_v1": _SWTFORMER_V1,
    "swtformer": _SWTFORMER_V1 + [
        ("hff", "model.hff"), ("seed_similarity", "seeds.similarity"), ("bg_seed_factor", "seeds.background_factor"),
        ("ccl_mode", "losses.ccl.mode"), ("ccl_margin", "losses.ccl.margin"), ("loss_weights", "losses.weights"),
    ],
    "vitpcm": [
        ("backbone", "model.backbone"), ("weights", "model.weights"), ("backbone_args", "model.backbone_args"),
        ("patch_size", "model.patch_size"), ("image_mean", "model.image_mean"), ("image_std", "model.image_std"),
        ("head", "model.head"), ("reg_weight", "losses.reg_weight"), ("inference", "seeds"),
    ],
    "toco": _TOCO,
    "mcc": _TOCO + [("masking", "losses.masking")],
    "afa": _AFA,
    "eca": _AFA + [("dino", "model.dino")] + [(key, f"losses.{key}") for key in (
        "cam_label", "seed_selection", "graph", "prototypes", "carm_label", "correspondence")],
}


def moved_block(block: dict, moves: list[tuple[str, str]]) -> dict:
    """A copy of the method block ``block`` with each ``old`` key path moved to ``new`` (dotted paths;
    a path the block does not have is skipped)."""
    block = json.loads(json.dumps(block))
    for old, new in moves:
        *parents, leaf = old.split(".")
        node = block
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            continue
        value = node.pop(leaf)
        *parents, leaf = new.split(".")
        node = block
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return block


def renamed(value: object) -> object:
    """``value`` with the keys of ``RENAMES`` renamed, at any depth, and each run's method block moved
    to its new shape (``MOVES``)."""
    value = _renamed(value)
    if isinstance(value, dict) and isinstance(value.get("runs"), dict):
        for entry in value["runs"].values():
            method = entry.get("method")
            if isinstance(method, dict) and method.get("name") in MOVES:
                entry["method"] = moved_block(method, MOVES[method["name"]])
    return value


def _renamed(value: object) -> object:
    if isinstance(value, dict):
        return {RENAMES.get(key, key): _renamed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_renamed(item) for item in value]
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
                                "stages.refine.crf.crf.* -> stages.refine.crf.*;"
                                f" method keys moved: {', '.join(sorted(MOVES))})")
    print(f"{runs} dataset x run entries and {len(new['stages'])} datasets' stage sections compared with {ref}"
          f"{mapped}: {len(found)} difference(s)")
    for path in found:
        print("  " + path)
    return 1 if found else 0


def config_of(ref: str) -> int:
    """Commit ``ref``'s config.yaml and this one, both resolved with this checkout's code: shows that an
    edit of config.yaml alone (defaults left to the types) changed no value a job receives."""
    text = subprocess.run(["git", "show", f"{ref}:config.yaml"], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, check=True).stdout
    old = json.loads(json.dumps(dump(yaml.safe_load(text))))
    new = json.loads(json.dumps(dump(yaml.safe_load(Path("config.yaml").read_text()))))
    found = differences(old, new)
    print(f"{len(new['runs'])} dataset x run entries and {len(new['stages'])} datasets' stage sections: "
          f"config.yaml of {ref} and this one, resolved with this code: {len(found)} difference(s)")
    for path in found:
        print("  " + path)
    return 1 if found else 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--against":
        sys.exit(against(sys.argv[2], strict="--strict" in sys.argv[3:]))
    if len(sys.argv) > 2 and sys.argv[1] == "--config-of":
        sys.exit(config_of(sys.argv[2]))
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("config.yaml")
    print(json.dumps(dump(yaml.safe_load(path.read_text())), sort_keys=True, indent=1))
