"""Benchmark: a method's training step, with the GPU speed options against a plain fp32 step, in one run.

    python -m wsss_core.benchmarks.stages --method cti --dataset synth --image-size 128 --batch-size 8 \\
        --steps 5 --warmup 2 [--crop-size 96] [--precision auto|bf16|fp32] [--channels-last] \\
        [--device auto] [--threads 1] [--config config.yaml] [--output report.json]

The method's hyper-parameters are config.yaml's ``methods.<method>`` resolved for ``--dataset`` (its
preset), with random initialisation (speed does not depend on the weights). A synthetic dataset is
generated in memory at ``--image-size`` (``wsss_core.data.synth.generate_sample``) and turned into
batches by the method's own ``training_sample``; batches are prepared before timing, so the figures are
those of the step alone: forward passes and losses (``training_step``; CTI's anchor, strong-view, I-CTI
and C-CTI passes, with its token memory marked full so that the C-CTI pass runs), backward, optimiser.

Two variants, each in a fresh process (so that peak resident memory belongs to it alone):

* ``plain``: fp32, NCHW, the networks' default attention;
* ``fast``: the loop's speed options: autocast to ``--precision`` (``auto`` = bf16 on a capable GPU, fp32
  on CPU; ``bf16`` forces it), channels-last when ``--channels-last``. Fused attention (SDPA) is used by
  the networks wherever a pass does not ask for the attention maps, in both variants alike.

Reported per variant: images/s, seconds per step, peak memory (``torch.cuda.max_memory_allocated`` on
GPU; peak RSS ``ru_maxrss`` on CPU, and its increase over the process's resident memory before the
first step) and the last step's losses; then ``fast / plain`` ratios. Prints a Markdown table and the
JSON report (also written to ``--output``).

For other callers (``wsss_core.benchmarks.gpu_proof``): the timed step is built by a ``STEP_SUBJECTS``
entry (``method``: a method's step as above; ``segmentation``: a ``train_segmentation`` step of a DeepLab),
the arguments may place the timed steps later in the schedule and count the FLOPs of one step, and
:func:`run_isolated` runs any such measurement in a fresh process under a time cap, turning an exception
(an out-of-memory error too), a crash or a timeout into one :class:`BenchmarkProcessError`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import queue as queue_module
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import default_collate

from wsss_core import workflow_config
from wsss_core.data.classes import class_names
from wsss_core.data.synth import SynthParams, generate_sample
from wsss_core.errors import summarize
from wsss_core.methods.base import Method, build_method
from wsss_core.registry import Registry
from wsss_core.stages.export_seeds import RandomInitCatalog
from wsss_core.training.loop import autocast, move_to_device, resolve_precision
from wsss_core.training.progress import TrainingProgress
from wsss_core.utils.atomic import write_json
from wsss_core.utils.device import resolve_device
from wsss_core.utils.seeding import sample_rng, seed_everything

MIB = 1024**2
VARIANTS = ("plain", "fast")

# Method-specific preparation so that the timed step is the method's full step (e.g. CTI's C-CTI pass
# only runs once its token memory is full, which takes many steps to reach).
STEP_PREPARATIONS: Registry[Callable[[nn.Module], None]] = Registry("benchmark step preparation")


@STEP_PREPARATIONS.register("cti")
def fill_token_memory(model: nn.Module) -> None:
    """Mark every class of CTI's FIFO token memory as full (random tokens), so the four-pass step runs."""
    memory = model.memory
    with torch.no_grad():
        memory.tokens.normal_()
        memory.counts.fill_(memory.size)


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as stream:
            return int(stream.read().split()[1]) * resource.getpagesize()
    except OSError:
        return _max_rss_bytes()


def method_settings(config_path: Path, method: str, dataset: str, crop_size: int | None) -> dict[str, Any]:
    """``methods.<method>`` of config.yaml resolved for ``dataset``, with ``train.crop_size`` overridden."""
    config = yaml.safe_load(config_path.read_text())
    settings = workflow_config.method_config(config, dataset, method)
    if crop_size is not None:
        settings.setdefault("train", {})["crop_size"] = crop_size
    return settings


def image_shape(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` of an image size given as one side or as ``[height, width]``."""
    if isinstance(image_size, int):
        return image_size, image_size
    height, width = image_size
    return int(height), int(width)


def synthetic_batches(
    method: Method, image_size: int | Sequence[int], batch_size: int, count: int, seed: int
) -> list[Any]:
    """``count`` batches of the method's training samples of synthetic images of ``image_size`` (one side,
    or ``[height, width]``)."""
    params = SynthParams(image_size=image_shape(image_size))
    batches = []
    for batch_index in range(count):
        samples = []
        for offset in range(batch_size):
            index = batch_index * batch_size + offset
            sample = generate_sample(seed, index, params)
            samples.append(method.training_sample(sample.image, sample.labels, sample_rng(seed, 0, index)))
        batches.append(default_collate(samples))
    return batches


@dataclass
class StepSubject:
    """What a timed training step needs: the task whose ``training_step`` gives the losses (a Method, or the
    segmentation stage's task), the model on its device, its optimiser and prepared CPU batches."""

    task: Any
    model: nn.Module
    optimizer: torch.optim.Optimizer
    batches: list[Any]


# Builders of a step subject from the benchmark arguments: ``(args, device, channels_last) -> StepSubject``.
# ``args["subject"]`` picks one (default ``method``), so one timing loop serves every training stage.
STEP_SUBJECTS: Registry[Callable[[Mapping[str, Any], torch.device, bool], StepSubject]] = Registry(
    "benchmark step subject"
)


@STEP_SUBJECTS.register("method")
def method_subject(args: Mapping[str, Any], device: torch.device, channels_last: bool) -> StepSubject:
    """A method's training step (``args["method_config"]``) on synthetic images of ``args["image_size"]``."""
    method = build_method(args["method_config"]["name"], args["method_config"], args["num_classes"])
    model = method.build_model(RandomInitCatalog()).to(device)
    if args["method_config"]["name"] in STEP_PREPARATIONS:
        STEP_PREPARATIONS.get(args["method_config"]["name"])(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer, _ = method.build_optimizer(model, args["steps"] + args["warmup"])
    batches = synthetic_batches(method, args["image_size"], args["batch_size"], 2, args["seed"])
    return StepSubject(method, model, optimizer, batches)


@STEP_SUBJECTS.register("segmentation")
def segmentation_subject(args: Mapping[str, Any], device: torch.device, channels_last: bool) -> StepSubject:
    """A ``train_segmentation`` step (``args["network_config"]``: ``stages.segmentation.<net>.train`` of
    config.yaml) on synthetic images with their ground-truth masks standing for the pseudo-masks."""
    from wsss_core.segmentation import build_segmentation_network
    from wsss_core.stages.train_segmentation import SegmentationSample, SegmentationTask

    stage = args["network_config"]
    model = build_segmentation_network(stage["network"], args["num_classes"] + 1, stage, RandomInitCatalog())
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    lr = float(stage["lr"])
    optimizer = torch.optim.SGD(model.parameter_groups(lr), lr=lr, momentum=float(stage["momentum"]),
                                weight_decay=float(stage["weight_decay"]))
    sample = SegmentationSample(int(stage["crop_size"]), tuple(float(scale) for scale in stage["scales"]),
                                model.normalization, flip=bool(stage.get("flip", True)))
    params = SynthParams(image_size=image_shape(args["image_size"]))
    batches = []
    for batch_index in range(2):
        samples = []
        for offset in range(args["batch_size"]):
            index = batch_index * args["batch_size"] + offset
            synthetic = generate_sample(args["seed"], index, params)
            samples.append(sample(synthetic.image, synthetic.mask, sample_rng(args["seed"], 0, index)))
        batches.append(default_collate(samples))
    return StepSubject(SegmentationTask(), model, optimizer, batches)


def _count_flops(run_step: Callable[[], Any]) -> int:
    """FLOPs of one call of ``run_step`` (forward, backward, optimiser), by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        run_step()
    return int(counter.get_total_flops())


def _measure(variant: str, args: Mapping[str, Any], queue: Any) -> None:
    """Runs in a fresh process: builds the step subject and batches, then times ``steps`` training steps.

    Optional ``args``: ``subject`` (a ``STEP_SUBJECTS`` name, default ``method``); ``schedule``
    (``first_step``, ``steps_per_epoch``, ``total_steps``: where in training the timed steps are, e.g. past
    a method's warm-up phases so that the step is the full one; default epoch 1, steps from 0);
    ``count_flops`` (one extra untimed step under FlopCounterMode, giving
    ``flops_per_step`` and ``tflops_per_second``)."""
    torch.set_num_threads(args["threads"])
    seed_everything(args["seed"])
    device = resolve_device(args["device"])
    fast = variant == "fast"
    channels_last = fast and args["channels_last"]
    subject = STEP_SUBJECTS.get(args.get("subject", "method"))(args, device, channels_last)
    model, optimizer = subject.model, subject.optimizer
    dtype = resolve_precision(args["precision"], device) if fast else None
    total = args["steps"] + args["warmup"]
    schedule = args.get("schedule")
    batches = [move_to_device(batch, device, channels_last) for batch in subject.batches]
    model.train()

    def progress_at(index: int) -> TrainingProgress:
        if not schedule:
            return TrainingProgress(epoch=1, step=index, steps_per_epoch=total, total_steps=2 * total)
        step_number = int(schedule["first_step"]) + index
        per_epoch = int(schedule["steps_per_epoch"])
        return TrainingProgress(step_number // per_epoch, step_number, per_epoch, int(schedule["total_steps"]))

    def step(index: int) -> dict[str, torch.Tensor]:
        with autocast(device, dtype):
            losses = subject.task.training_step(model, batches[index % len(batches)], progress_at(index))
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        return losses

    for index in range(args["warmup"]):
        step(index)
    flops = _count_flops(lambda: step(args["warmup"])) if args.get("count_flops") else None
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    baseline = _current_rss_bytes()
    started = time.perf_counter()
    for index in range(args["warmup"], total):
        losses = step(index)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    report: dict[str, Any] = {
        "variant": variant,
        "precision": "fp32" if dtype is None else str(dtype).removeprefix("torch."),
        "channels_last": channels_last,
        "images_per_second": args["steps"] * args["batch_size"] / seconds,
        "seconds_per_step": seconds / args["steps"],
        "losses": {name: round(float(value.detach().float()), 5) for name, value in losses.items()},
    }
    if flops is not None:
        report["flops_per_step"] = flops
        report["tflops_per_second"] = flops * args["steps"] / seconds / 1e12
    report.update(memory_report(device, baseline))
    queue.put(report)


def memory_report(device: torch.device, baseline_rss: int | None = None) -> dict[str, Any]:
    """Peak memory of this process since the last reset: ``torch.cuda.max_memory_allocated`` on a GPU; peak
    RSS on CPU (and its increase over ``baseline_rss``, the resident memory before the timed work)."""
    if device.type == "cuda":
        return {"peak_memory_mib": torch.cuda.max_memory_allocated(device) / MIB,
                "memory_kind": "torch.cuda.max_memory_allocated"}
    report = {"peak_memory_mib": _max_rss_bytes() / MIB, "memory_kind": "peak RSS (ru_maxrss)"}
    if baseline_rss is not None:
        report["step_memory_mib"] = (_max_rss_bytes() - baseline_rss) / MIB
    return report


class BenchmarkProcessError(RuntimeError):
    """A benchmark process raised, died or ran past its time cap: ``reason`` says why, the message also which
    variant."""

    def __init__(self, variant: str, reason: str) -> None:
        super().__init__(f"{variant}: {reason}")
        self.variant, self.reason = variant, reason


def _report_errors(target: Callable[[str, Mapping[str, Any], Any], None], variant: str,
                   args: Mapping[str, Any], queue: Any) -> None:
    """Runs ``target`` in the child and puts ``{"error": ...}`` on the queue when it raises (an OOM too)."""
    try:
        target(variant, args, queue)
    except BaseException as error:  # noqa: BLE001  (reported to the parent, which records it)
        queue.put({"error": summarize(error, max_lines=1)})


def run_isolated(
    target: Callable[[str, Mapping[str, Any], Any], None], variant: str, args: Mapping[str, Any],
    timeout: float | None = None, start_method: str = "spawn",
) -> dict[str, Any]:
    """``target(variant, args, queue)`` in a fresh process; returns the report it puts on the queue.

    Raises :class:`BenchmarkProcessError` when the target raises (its type and first line), when the
    process dies without a report, or when it runs past ``timeout`` seconds (it is then killed)."""
    context = multiprocessing.get_context(start_method)
    queue = context.Queue()
    process = context.Process(target=_report_errors, args=(target, variant, dict(args), queue))
    process.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    report: dict[str, Any] | None = None
    try:
        while report is None:
            try:
                report = queue.get(timeout=1.0)
            except queue_module.Empty:
                if not process.is_alive():
                    try:  # the report may have been put just before the process ended
                        report = queue.get(timeout=1.0)
                    except queue_module.Empty:
                        raise BenchmarkProcessError(
                            variant, f"the process ended with exit code {process.exitcode} and no report"
                        ) from None
                elif deadline is not None and time.monotonic() > deadline:
                    raise BenchmarkProcessError(variant, f"stopped after the time cap of {timeout:.0f} s")
    finally:
        if process.is_alive() and report is None:
            process.kill()
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()
    if "error" in report:
        raise BenchmarkProcessError(variant, report["error"])
    return report


def run_variant(variant: str, args: Mapping[str, Any], timeout: float | None = None,
                start_method: str = "spawn") -> dict[str, Any]:
    """``_measure`` in a fresh process (see :func:`run_isolated`)."""
    return run_isolated(_measure, variant, args, timeout, start_method)


def fast_over_plain(plain: Mapping[str, Any], fast: Mapping[str, Any]) -> dict[str, float]:
    """Ratios ``fast / plain`` of images/s and peak memory (and step memory where both have it)."""
    ratios = {
        "images_per_second": fast["images_per_second"] / plain["images_per_second"],
        "peak_memory": fast["peak_memory_mib"] / plain["peak_memory_mib"],
    }
    if "step_memory_mib" in plain and "step_memory_mib" in fast and plain["step_memory_mib"] > 0:
        ratios["step_memory"] = fast["step_memory_mib"] / plain["step_memory_mib"]
    return ratios


def benchmark(args: Mapping[str, Any]) -> dict[str, Any]:
    """Both variants and their ratios (``fast / plain``)."""
    reports = {variant: run_variant(variant, args) for variant in VARIANTS}
    ratios = fast_over_plain(reports["plain"], reports["fast"])
    settings = {key: value for key, value in args.items() if key not in ("method_config", "network_config")}
    return {"settings": settings, "device": str(resolve_device(args["device"])), "variants": reports,
            "fast_over_plain": ratios, "torch": torch.__version__}


def markdown_table(report: Mapping[str, Any]) -> str:
    settings = report["settings"]
    lines = [
        f"{settings['method']} training step, {settings['dataset']} preset, synthetic {settings['image_size']} px, "
        f"batch {settings['batch_size']}, {settings['steps']} steps, device {report['device']}",
        "",
        "| variant | precision | channels-last | images/s | s/step | peak memory (MiB) | step memory (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant in report["variants"].values():
        step_memory = f"{variant['step_memory_mib']:.0f}" if "step_memory_mib" in variant else "–"
        lines.append(
            f"| {variant['variant']} | {variant['precision']} | {variant['channels_last']} | "
            f"{variant['images_per_second']:.2f} | {variant['seconds_per_step']:.3f} | "
            f"{variant['peak_memory_mib']:.0f} | {step_memory} |"
        )
    ratios = report["fast_over_plain"]
    lines.append(
        "| fast / plain | | | " + f"{ratios['images_per_second']:.2f}× | | {ratios['peak_memory']:.2f}× | "
        + (f"{ratios['step_memory']:.2f}× |" if "step_memory" in ratios else "– |")
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="cti", help="method or variant name in config.yaml (default cti)")
    parser.add_argument("--dataset", default="synth", help="dataset preset of the method settings (default synth)")
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--image-size", type=int, default=128, help="synthetic image side in pixels")
    parser.add_argument("--crop-size", type=int, default=None, help="override method.train.crop_size")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--precision", default="bf16", choices=("auto", "bf16", "fp32"), help="of the fast variant")
    parser.add_argument("--channels-last", action="store_true", help="fast variant in NHWC (CNNs)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="JSON report to write")
    options = parser.parse_args(argv)
    method_config = method_settings(options.config, options.method, options.dataset, options.crop_size)
    config = yaml.safe_load(options.config.read_text())
    classes = workflow_config.dataset_config(config, options.dataset).get("classes", options.dataset)
    args = {
        "method": options.method, "dataset": options.dataset, "method_config": method_config,
        "num_classes": len(class_names(classes)), "image_size": options.image_size,
        "batch_size": options.batch_size, "steps": options.steps, "warmup": options.warmup,
        "precision": options.precision, "channels_last": options.channels_last, "device": options.device,
        "threads": options.threads, "seed": options.seed,
    }
    report = benchmark(args)
    print(markdown_table(report))
    print(json.dumps(report, indent=2))
    if options.output is not None:
        write_json(options.output, report)


if __name__ == "__main__":
    main()
