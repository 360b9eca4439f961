"""Compare two workflow output folders (``results/`` of two runs of the same targets) value by value:
HDF5 stores dataset by dataset (array and dtype), JSON files without provenance and timings (``git_commit``,
``code_fingerprint``, ``seconds``, ...), PyTorch checkpoints by their ``model`` state dict and their
training history without timings, safetensors files tensor by tensor, anything else byte for byte.

    python scripts/compare_chain_outputs.py /tmp/before /tmp/after

Both runs must use the same ``--cores``: a rule's thread count (``threads: 8``, capped by ``--cores``)
sets the CPU threads of its job, and another thread count sums floats in another order.
Exit status 1 when any file differs or is missing on one side.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np

VOLATILE = {"provenance", "git_commit", "code_fingerprint", "seconds", "elapsed_seconds", "images_per_second",
            "training_seconds", "created", "timestamp", "wall_seconds"}


def strip(value):
    if isinstance(value, dict):
        return {key: strip(item) for key, item in value.items() if key not in VOLATILE}
    if isinstance(value, list):
        return [strip(item) for item in value]
    return value


def same_h5(a: Path, b: Path) -> tuple[bool, str]:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names_a: list[str] = []
        names_b: list[str] = []
        fa.visit(lambda name: names_a.append(name) if isinstance(fa[name], h5py.Dataset) else None)
        fb.visit(lambda name: names_b.append(name) if isinstance(fb[name], h5py.Dataset) else None)
        ok = sorted(names_a) == sorted(names_b) and all(
            fa[name].dtype == fb[name].dtype and np.array_equal(fa[name][()], fb[name][()]) for name in names_a
        )
        return ok, f"{len(names_a)} datasets, array by array"


def same_checkpoint(a: Path, b: Path) -> tuple[bool, str]:
    import torch

    ca, cb = (torch.load(path, map_location="cpu", weights_only=False) for path in (a, b))
    if not isinstance(ca, dict) or "model" not in ca:
        return a.read_bytes() == b.read_bytes(), "bytes"
    ma, mb = ca["model"], cb.get("model", {})
    ok = set(ma) == set(mb) and all(torch.equal(ma[key], mb[key]) for key in ma)
    ok = ok and strip(ca.get("history")) == strip(cb.get("history"))
    return ok, f"{len(ma)} tensors of the state dict, history without timings"


def same_safetensors(a: Path, b: Path) -> tuple[bool, str]:
    import torch
    from safetensors.torch import load_file

    ta, tb = load_file(a), load_file(b)
    return set(ta) == set(tb) and all(torch.equal(ta[key], tb[key]) for key in ta), f"{len(ta)} tensors"


def compare(before: Path, after: Path) -> int:
    files = sorted(path.relative_to(before) for path in (before / "results").rglob("*") if path.is_file())
    different = 0
    for relative in files:
        a, b = before / relative, after / relative
        if not b.exists():
            print(f"MISSING {relative}")
            different += 1
            continue
        if relative.suffix == ".h5":
            ok, how = same_h5(a, b)
        elif relative.suffix == ".json":
            ok, how = strip(json.loads(a.read_text())) == strip(json.loads(b.read_text())), "JSON without provenance"
        elif relative.suffix == ".pt":
            ok, how = same_checkpoint(a, b)
        elif relative.suffix == ".safetensors":
            ok, how = same_safetensors(a, b)
        else:
            ok, how = a.read_bytes() == b.read_bytes(), "bytes"
        different += not ok
        if not ok or relative.suffix in (".h5", ".pt") or relative.name == "miou.json":
            print(f"{'same' if ok else 'DIFFERENT'} {relative} ({how})")
    print(f"{len(files)} files compared: {len(files) - different} the same, {different} different")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(compare(Path(sys.argv[1]), Path(sys.argv[2])))
