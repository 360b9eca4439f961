"""The values each method's code ends up with, for every dataset x method/variant, as one JSON document;
``--against <ref>`` compares them with another commit (its tree extracted with ``git archive`` and run
with its own code and config.yaml), so a refactoring of how methods read their settings can be shown to
change no value:

    PYTHONPATH=$PWD python scripts/compare_method_values.py --against 4e2ab07

For each run the method is built from its resolved block (``workflow_config.method_config``) and recorded:
its attributes after ``__init__`` (type and value: ``10`` and ``10.0`` differ), the backbones it asks for
(name, weights key, constructor arguments), the network (architecture and, under a fixed seed, a hash of
its initial parameters), the optimiser's parameter groups and the scheduler's learning rates over the
first steps, ``total_steps``, and a hash of one ``training_sample``. On the synthetic datasets it also
runs ``infer_seeds``, ``class_scores`` and (end-to-end methods) ``segment`` on a random image and
records hashes of their arrays. Weight files are not read (random initialisation, the same on both
sides). ``--datasets synth,voc`` narrows the datasets.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from dump_resolved_config import differences, run_at  # scripts/ is sys.path[0] when run as a script
from wsss_core import workflow_config as resolve

STEPS_PER_EPOCH = 7


def _hash(array: Any) -> str:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.ascontiguousarray(np.asarray(array))
    return f"{array.dtype}{list(array.shape)}:{hashlib.sha256(array.tobytes()).hexdigest()[:16]}"


def describe(value: Any, depth: int = 0) -> Any:
    """A JSON value that keeps the Python type of scalars."""
    if depth > 6:
        return repr(value)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return f"{type(value).__name__}:{value!r}"
    if isinstance(value, (list, tuple)):
        return {"type": type(value).__name__, "items": [describe(item, depth + 1) for item in value]}
    if isinstance(value, dict):
        return {str(key): describe(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return _hash(value)
    if isinstance(value, torch.nn.Module):
        state = {key: _hash(item) for key, item in value.state_dict().items()}
        return {"module": repr(value), "state": state}
    if hasattr(value, "model_dump"):  # a settings object
        return {"settings": type(value).__name__}
    if hasattr(value, "__dict__"):
        return {"type": type(value).__name__, "vars": describe(vars(value), depth + 1)}
    return repr(value)


class RecordingWeights:
    """A weights catalogue that records the keys asked for and gives random initialisation."""

    def __init__(self) -> None:
        self.asked: list[Any] = []

    def get(self, key: Any) -> None:
        self.asked.append(key)
        return None


def _patch_create_backbone(calls: list) -> None:
    import wsss_core.models.backbones as backbones

    original = getattr(backbones, "_original_create_backbone", backbones.create_backbone)
    backbones._original_create_backbone = original

    def recording(name, weights=None, **overrides):
        calls.append({"name": name, "overrides": describe(dict(sorted(overrides.items())))})
        return original(name, weights, **overrides)

    backbones.create_backbone = recording
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("wsss_core.methods.") and hasattr(module, "create_backbone"):
            module.create_backbone = recording


def record(config: dict, dataset: str, run: str, inference: bool) -> dict:
    from wsss_core.methods.base import build_method

    out: dict[str, Any] = {}
    method_config = resolve.method_config(config, dataset, run)
    torch.manual_seed(0)
    method = build_method(method_config["name"], method_config, 20)
    out["attributes"] = describe({key: value for key, value in sorted(vars(method).items())
                                  if key not in ("config", "settings")})
    calls: list = []
    _patch_create_backbone(calls)
    weights = RecordingWeights()
    torch.manual_seed(0)
    model = method.build_model(weights)
    out["backbones"] = calls
    out["weights_asked"] = weights.asked
    out["model"] = describe(model)
    out["total_steps"] = describe(method.total_steps(STEPS_PER_EPOCH))
    optimizer, scheduler = method.build_optimizer(model, STEPS_PER_EPOCH)
    out["optimizer"] = [describe({key: value for key, value in sorted(group.items()) if key != "params"}
                                 | {"num_params": len(group["params"])}) for group in optimizer.param_groups]
    trace = []
    for step in range(1, 2 * STEPS_PER_EPOCH + 1):
        if hasattr(scheduler, "step_update"):
            scheduler.step_update(step)
        if step % STEPS_PER_EPOCH == 0 and hasattr(scheduler, "step"):
            scheduler.step(step // STEPS_PER_EPOCH)
        trace.append([float(group["lr"]) for group in optimizer.param_groups])
    out["lr_trace"] = trace
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    labels = np.zeros(20, np.float32)
    labels[[2, 5]] = 1
    sample = method.training_sample(image, labels, np.random.default_rng(1))
    out["training_sample"] = describe(sample)
    if inference:
        model.eval()
        torch.manual_seed(0)
        seeds = method.infer_seeds(model, image, labels)
        out["seeds"] = describe(vars(seeds) if hasattr(seeds, "__dict__") else seeds)
        out["class_scores"] = describe(method.class_scores(model, image))
        if method.end_to_end:
            out["segment"] = describe(method.segment(model, image))
    return out


def dump(config: dict, datasets: list[str]) -> dict:
    torch.set_num_threads(1)
    out: dict = {}
    for dataset in datasets:
        for run in resolve.run_names(config):
            try:
                out[f"{dataset}/{run}"] = record(config, dataset, run, inference=dataset.startswith("synth"))
            except Exception as error:  # recorded, compared like any value
                out[f"{dataset}/{run}"] = {"error": f"{type(error).__name__}: {error}"}
    return out


def against(ref: str, datasets: list[str]) -> int:
    old = run_at(ref, Path(__file__).resolve(), ["--datasets", ",".join(datasets)])
    if old.returncode:
        raise SystemExit(old.stderr[-4000:])
    new = dump(yaml.safe_load(Path("config.yaml").read_text()), datasets)
    found = differences(json.loads(old.stdout), json.loads(json.dumps(new)))
    errors = [key for key, value in new.items() if "error" in value]
    print(f"{len(new)} dataset x run entries compared with {ref} ({', '.join(datasets)}): {len(found)} difference(s); "
          f"{len(errors)} entries could not be built on this side")
    for path in found + [f"{key}: {new[key]['error']}" for key in errors]:
        print("  " + path)
    return 1 if found else 0


if __name__ == "__main__":
    arguments = sys.argv[1:]
    chosen = ["synth", "synth_b", "voc", "coco"]
    if "--datasets" in arguments:
        index = arguments.index("--datasets")
        chosen = arguments[index + 1].split(",")
        del arguments[index : index + 2]
    if len(arguments) == 2 and arguments[0] == "--against":
        sys.exit(against(arguments[1], chosen))
    print(json.dumps(dump(yaml.safe_load(Path("config.yaml").read_text()), chosen), sort_keys=True, indent=1))
