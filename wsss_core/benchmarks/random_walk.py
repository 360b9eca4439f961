"""Benchmark: the sparse random walk against dense formulations of the same maths on the same inputs.

    python -m wsss_core.benchmarks.random_walk --sizes 320x240,640x480 --stride 4 --classes 3 \\
        --radius 5 --beta 10 --exp-times 8 --dense-memory-limit-gib 4 [--pipeline irn psa] \\
        [--output report.json]

For each image size it builds one synthetic boundary map (random disc outlines) at the feature stride
and class scores, derives the radius-``r`` path-max affinity once, then runs, each in a fresh process
so that the reported peak resident memory (``ru_maxrss``) belongs to that implementation alone:

* ``sparse``: :func:`wsss_core.refine.random_walk.random_walk` (what the pipeline uses);
* ``dense_squaring``: the authors' formulation, the dense ``N × N`` transition squared ``exp_times``
  times (:func:`dense_random_walk`);
* ``dense_steps``: the dense transition applied ``2^exp_times`` times to the scores (the cheaper dense
  alternative).

It reports per size and implementation the seconds of the walk, the peak RSS and its increase over
the process's baseline, the speed-up ``dense / sparse`` and the largest absolute difference from the
sparse result. A dense run is skipped (and said so) when its ``N × N`` float32 matrices (three for
squaring, one for steps) would exceed ``--dense-memory-limit-gib``.

``--pipeline irn psa`` also measures one whole per-image refinement at each size with the published
network sizes (random weights: IRNet on ResNet-50, AffinityNet on ResNet-38): network forward (with
the mirror image for IRN), affinities, walk and upsampling; seconds and peak RSS per image.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time
from typing import Any

import numpy as np
import torch

from wsss_core.refine.affinity import affinity_from_boundary
from wsss_core.refine.path_index import PathIndex
from wsss_core.refine.random_walk import dense_random_walk, random_walk
from wsss_core.utils.atomic import write_json

GIB = 1024**3
WALKS = ("sparse", "dense_squaring", "dense_steps")


def synthetic_inputs(height: int, width: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A boundary map with a few disc outlines ``[h, w]`` and scores high inside each disc ``[K, h, w]``."""
    generator = torch.Generator().manual_seed(seed)
    ys = torch.arange(height).view(-1, 1).float()
    xs = torch.arange(width).view(1, -1).float()
    boundary = torch.rand(height, width, generator=generator) * 0.05
    scores = torch.rand(classes, height, width, generator=generator) * 0.1
    for channel in range(classes):
        cy, cx = (torch.rand(2, generator=generator) * torch.tensor([height, width])).tolist()
        radius = (0.15 + 0.2 * torch.rand(1, generator=generator).item()) * min(height, width)
        distance = ((ys - cy) ** 2 + (xs - cx) ** 2).sqrt()
        boundary = torch.maximum(boundary, torch.exp(-((distance - radius) ** 2) / 2.0))
        scores[channel] += (distance < radius * 0.5).float()
    return boundary, scores


def _max_rss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # Linux reports KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _walk(kind: str, args: dict[str, Any], queue: Any) -> None:
    """Runs in a fresh process: builds the inputs, then times one walk implementation."""
    torch.set_num_threads(args["threads"])
    path_index = PathIndex(args["radius"])
    boundary, scores = synthetic_inputs(args["grid_height"], args["grid_width"], args["classes"], args["seed"])
    affinity = affinity_from_boundary(boundary.unsqueeze(0), path_index)[0]
    baseline = _max_rss_bytes()
    started = time.perf_counter()
    if kind == "sparse":
        result = random_walk(scores, affinity, path_index, args["beta"], args["exp_times"])
    else:
        result = dense_random_walk(scores, affinity, path_index, args["beta"], args["exp_times"],
                                   by_squaring=kind == "dense_squaring")
    seconds = time.perf_counter() - started
    peak = _max_rss_bytes()
    queue.put({"seconds": seconds, "peak_rss_gib": peak / GIB, "added_rss_gib": (peak - baseline) / GIB,
               "result": result.numpy()})


def _pipeline(kind: str, args: dict[str, Any], queue: Any) -> None:
    """Runs in a fresh process: whole IRN or PSA refinements of a random image.

    Optional ``args``: ``device`` (default cpu), ``settings`` (the refiner's ``stage.<kind>`` block, default
    the published network sizes with random weights), ``warmup`` untimed and ``repeats`` timed refinements
    (defaults 0 and 1). Seconds are per image; on a GPU the peak memory is ``torch.cuda.max_memory_allocated``
    over the timed refinements."""
    torch.set_num_threads(args["threads"])
    from wsss_core.models.weights import WeightsCatalog
    from wsss_core.refine.affinity import AFFINITY_REFINERS
    from wsss_core.refine.seed_adapter import RefinementSeeds

    device = torch.device(args.get("device", "cpu"))
    refiner = AFFINITY_REFINERS.get(kind)()  # type: ignore[operator]
    settings = refiner.settings({kind: args.get("settings") or {"weights": None}})
    model = refiner.build_model(settings, WeightsCatalog({})).to(device).eval()
    rng = np.random.default_rng(args["seed"])
    height, width = args["height"], args["width"]
    image = torch.from_numpy(rng.standard_normal((3, height, width)).astype(np.float32)).to(device)
    maps = rng.random((args["classes"], height, width)).astype(np.float32)
    seeds = RefinementSeeds(maps=maps / maps.max(axis=(1, 2), keepdims=True), keys=np.arange(1, args["classes"] + 1))
    with torch.inference_mode():
        for _ in range(int(args.get("warmup", 0))):
            refiner.pseudo_mask(model, image, seeds, settings)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        baseline = _max_rss_bytes()
        repeats = int(args.get("repeats", 1))
        started = time.perf_counter()
        for _ in range(repeats):
            mask = refiner.pseudo_mask(model, image, seeds, settings)  # ends with .cpu(): synchronised
        seconds = (time.perf_counter() - started) / repeats
    peak = _max_rss_bytes()
    report = {"seconds": seconds, "peak_rss_gib": peak / GIB, "added_rss_gib": (peak - baseline) / GIB,
              "mask_shape": list(mask.shape)}
    if device.type == "cuda":
        report["peak_gpu_gib"] = torch.cuda.max_memory_allocated(device) / GIB
    queue.put(report)


def in_subprocess(target: Any, kind: str, args: dict[str, Any]) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(kind, args, queue))
    process.start()
    report = queue.get()
    process.join()
    return report


def _rounded(report: dict[str, Any]) -> dict[str, Any]:
    return {key: round(value, 4) if isinstance(value, float) else value
            for key, value in report.items() if key != "result"}


def benchmark_size(width: int, height: int, options: argparse.Namespace) -> dict[str, Any]:
    grid_height = (height - 1) // options.stride + 1
    grid_width = (width - 1) // options.stride + 1
    nodes = grid_height * grid_width
    args = {"grid_height": grid_height, "grid_width": grid_width, "classes": options.classes,
            "radius": options.radius, "beta": options.beta, "exp_times": options.exp_times,
            "seed": options.seed, "threads": options.threads, "height": height, "width": width}
    row: dict[str, Any] = {"image": f"{width}x{height}", "grid": f"{grid_width}x{grid_height}", "nodes": nodes}
    sparse = in_subprocess(_walk, "sparse", args)
    row["sparse"] = _rounded(sparse)
    for kind, matrices in (("dense_squaring", 3), ("dense_steps", 1)):
        needed = matrices * nodes * nodes * 4 / GIB
        if needed > options.dense_memory_limit_gib:
            row[kind] = f"skipped: needs ~{needed:.1f} GiB > --dense-memory-limit-gib {options.dense_memory_limit_gib}"
            continue
        dense = in_subprocess(_walk, kind, args)
        row[kind] = _rounded(dense)
        row[kind]["speedup_of_sparse"] = round(dense["seconds"] / sparse["seconds"], 2)
        row[kind]["max_abs_difference"] = float(np.abs(dense["result"] - sparse["result"]).max())
    for kind in options.pipeline:
        row[f"pipeline_{kind}"] = _rounded(in_subprocess(_pipeline, kind, args))
    return row


def parse_sizes(text: str) -> list[tuple[int, int]]:
    try:
        sizes = [tuple(int(value) for value in item.lower().split("x")) for item in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(len(size) != 2 or min(size) < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"--sizes must look like 320x240,640x480, got '{text}'")
    return sizes  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("320x240,640x480"),
                        help="image sizes WIDTHxHEIGHT, comma separated")
    parser.add_argument("--stride", type=int, default=4, help="feature stride (IRN 4, PSA 8)")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--radius", type=float, default=5)
    parser.add_argument("--beta", type=float, default=10)
    parser.add_argument("--exp-times", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dense-memory-limit-gib", type=float, default=4.0)
    parser.add_argument("--pipeline", nargs="*", default=[], choices=["irn", "psa"],
                        help="also time a whole per-image refinement with the published network sizes")
    parser.add_argument("--output", help="also write the report to this JSON file")
    options = parser.parse_args(argv)
    report = {
        "settings": {key: value for key, value in vars(options).items() if key not in ("output", "sizes")},
        "torch": torch.__version__,
        "results": [benchmark_size(width, height, options) for width, height in options.sizes],
    }
    print(json.dumps(report, indent=2))
    if options.output:
        write_json(options.output, report)
    return report


if __name__ == "__main__":
    main()
