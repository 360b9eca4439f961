"""Where one training step's time goes: a ``torch.profiler`` trace of a GPU-proof training item.

    python -m wsss_core.benchmarks.step_profile --items cti_train mctformer_train --output-dir OUT
    python -m wsss_core.benchmarks.step_profile --tiny --items cti_train --output-dir /tmp/x   # CPU check

Builds the step exactly as ``gpu_proof`` times it (same subject, batches, schedule position, ``fast`` =
bf16 autocast), runs ``--warmup`` steps, then profiles ``--steps`` steps and reports per step: wall time,
device (kernel) time and their ratio (how busy the GPU was: a low ratio means the step waits on the
Python/launch side, not on arithmetic), the kernel count, and the kernels grouped by kind (matrix
products, attention, normalisation/element-wise, copies) with the top kernels by device time. It
writes ``<output-dir>/step_profile.md`` and ``.json``. Answers why a step is far from the chip's peak.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from wsss_core.benchmarks import gpu_proof, stages
from wsss_core.training.progress import TrainingProgress
from wsss_core.training.loop import autocast, move_to_device, resolve_precision
from wsss_core.utils.atomic import write_json, write_text
from wsss_core.utils.device import resolve_device
from wsss_core.utils.seeding import seed_everything

# Kernel kinds by name (first match wins); the rest is "other".
KERNEL_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("attention (fused)", re.compile(r"flash|fmha|attention|sdpa|efficient_attention", re.I)),
    ("matrix products", re.compile(r"gemm|matmul|cutlass|xmma|sm90_|cublas|nvjet|wgmma", re.I)),
    ("convolution", re.compile(r"conv|implicit", re.I)),
    ("softmax", re.compile(r"softmax", re.I)),
    ("normalisation", re.compile(r"norm", re.I)),
    ("copies / casts", re.compile(r"copy|cast|memcpy|memset|fill", re.I)),
    ("reductions", re.compile(r"reduce|sum|mean|max", re.I)),
    ("element-wise", re.compile(r"elementwise|vectorized|unrolled|pointwise|triton", re.I)),
)


def kernel_kind(name: str) -> str:
    for kind, pattern in KERNEL_KINDS:
        if pattern.search(name):
            return kind
    return "other"


def profile_item(item: gpu_proof.ProofItem, warmup: int, steps: int) -> dict[str, Any]:
    """Profile ``steps`` fast-variant training steps of a proof item in this process."""
    args = dict(item.args)
    torch.set_num_threads(args["threads"])
    seed_everything(args["seed"])
    device = resolve_device(args["device"])
    subject = stages.STEP_SUBJECTS.get(args.get("subject", "method"))(args, device, bool(args["channels_last"]))
    model, optimizer = subject.model, subject.optimizer
    dtype = resolve_precision(args["precision"], device)
    batches = [move_to_device(batch, device, bool(args["channels_last"])) for batch in subject.batches]
    schedule = args.get("schedule") or {"first_step": 0, "steps_per_epoch": 1, "total_steps": 2}
    model.train()

    def step(index: int) -> None:
        number = int(schedule["first_step"]) + index
        per_epoch = int(schedule["steps_per_epoch"])
        progress = TrainingProgress(number // per_epoch, number, per_epoch, int(schedule["total_steps"]))
        with autocast(device, dtype):
            losses = subject.task.training_step(model, batches[index % len(batches)], progress)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()

    for index in range(warmup):
        step(index)
    cuda = device.type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    with torch.profiler.profile(activities=activities) as profiler:
        for index in range(warmup, warmup + steps):
            step(index)
        if cuda:
            torch.cuda.synchronize(device)
    wall = (time.perf_counter() - started) / steps
    kinds: dict[str, float] = {}
    kernels: dict[str, tuple[float, int]] = {}
    for event in profiler.key_averages():
        seconds = (event.device_time_total if cuda else 0.0) / 1e6
        if not cuda or seconds <= 0 or event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        kind = kernel_kind(event.key)
        kinds[kind] = kinds.get(kind, 0.0) + seconds / steps
        kernels[event.key] = (seconds / steps, event.count // steps)
    device_seconds = sum(kinds.values())
    top = sorted(kernels.items(), key=lambda entry: -entry[1][0])[:12]
    return {
        "item": item.name, "title": item.title, "precision": str(dtype).removeprefix("torch.") if dtype else "fp32",
        "batch_size": args["batch_size"], "wall_ms_per_step": wall * 1e3,
        "device_ms_per_step": device_seconds * 1e3 if cuda else None,
        "device_busy": device_seconds / wall if cuda and wall > 0 else None,
        "kernels_per_step": sum(count for _, count in kernels.values()) if cuda else None,
        "kinds_ms": {kind: seconds * 1e3 for kind, seconds in sorted(kinds.items(), key=lambda kv: -kv[1])},
        "top_kernels": [{"name": name[:120], "ms": seconds * 1e3, "calls": count} for name, (seconds, count) in top],
    }


def markdown(results: Sequence[Mapping[str, Any]], device_name: str) -> str:
    lines = [f"# Training-step profiles ({device_name}, torch {torch.__version__})", "",
             "Command: `python -m wsss_core.benchmarks.step_profile` (wsss_core/benchmarks/step_profile.py). Per step, "
             "after warm-up; *device busy* = kernel time / wall time.", ""]
    for result in results:
        busy = result["device_busy"]
        lines += [f"## {result['title']} ({result['precision']})", "",
                  f"wall {result['wall_ms_per_step']:.1f} ms/step; kernels {result['device_ms_per_step'] or 0:.1f} ms "
                  f"({'' if busy is None else f'{100 * busy:.0f} % busy'}); {result['kernels_per_step']} kernels/step", "",
                  "| kernel kind | ms/step |", "|:---|---:|"]
        lines += [f"| {kind} | {ms:.2f} |" for kind, ms in result["kinds_ms"].items()]
        lines += ["", "| top kernels | ms/step | calls/step |", "|:---|---:|---:|"]
        lines += [f"| `{k['name']}` | {k['ms']:.2f} | {k['calls']} |" for k in result["top_kernels"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", nargs="+", default=["cti_train", "mctformer_train"])
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tiny", action="store_true", help="synthetic presets and tiny sizes, for a CPU check")
    args = parser.parse_args(argv)
    settings = gpu_proof.ProofSettings(config=yaml.safe_load(args.config.read_text()), tiny=args.tiny,
                                       device=args.device, threads=1 if args.tiny else 8)
    results = []
    for name in args.items:
        item = gpu_proof.PROOF_ITEMS.get(name)(settings)
        if item.target is not stages._measure:
            raise SystemExit(f"item '{name}' is not a training step; choose from the *_train items")
        results.append(profile_item(item, args.warmup, args.steps))
        print(f"{name}: {results[-1]['wall_ms_per_step']:.1f} ms/step, busy {results[-1]['device_busy']}", flush=True)
    device = resolve_device(args.device)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_json(args.output_dir / "step_profile.json", {"device": device_name, "results": results})
    write_text(args.output_dir / "step_profile.md", markdown(results, device_name))


if __name__ == "__main__":
    main()
