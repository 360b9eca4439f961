"""GPU proof at paper scale: one command that measures every GPU stage of the papers' chains on one GPU.

    python -m wsss_core.benchmarks.gpu_proof [--output-dir docs] [--budget-s 450] [--item-timeout-s 120] \\
        [--peak-tflops 790] [--items cti_train ...] [--device auto] [--threads N] [--config config.yaml]
    scripts/gpu_proof.sh [the same options]          # the wrapper: picks python, logs, same options
    python -m wsss_core.benchmarks.gpu_proof --tiny --output-dir /tmp/proof   # CPU check of the code path

(The wrapper is ``scripts/gpu_proof.sh``, not ``benchmarks/``: the top-level ``benchmarks/`` folder is
Snakemake's, which writes the per-job benchmark TSVs there, and it is git-ignored.)

What it measures, each with random-init weights on synthetic images at VOC resolution (375×500,
``wsss_core.data.synth``; speed does not depend on the weights or the pixels), the hyper-parameters of
``config.yaml`` resolved for the ``voc`` preset:

* the training step of CTI and MCTformer-V2 (DeiT-S/224, batch 64), ToCo and MCC (DeiT-B/448, batch 4)
  and ECA (MiT-B1 + frozen DINO ViT-S/8, 512, batch 8), and of DeepLab-V2 (ResNet-101, crop 321, batch 10)
  and DeepLab-V1 ResNet-38 (crop 321, batch 4); each twice, ``plain`` (fp32, NCHW) and ``fast`` (the
  ``stages.train_method`` / ``train_segmentation`` speed switches: ``precision: bf16`` autocast, and
  ``channels_last`` for the CNNs), side by side with the ratio. Fused attention (SDPA) is on in both,
  wherever a pass does not ask for attention maps. The timed steps sit in the middle of each method's
  schedule (past ToCo's, MCC's and ECA's warm-up phases: the full step), with CTI's token memory full;
  FLOPs of one step are counted by ``torch.utils.flop_counter.FlopCounterMode`` and give the achieved
  TFLOP/s and, for ``fast``, the fraction of ``--peak-tflops`` (the H200's dense bf16 peak by default);
* CTI's seed export per image (fp32 and bf16, as ``stages.export_seeds.precision``);
* IRN and PSA refinement per 640×480 image (network, affinities, sparse random walk: the published
  network sizes, as ``wsss_core.benchmarks.random_walk --pipeline``);
* DeepLab-V1 ResNet-38 inference per val image (the stage's scales) and the dense CRF after it (CPU);

then the time of CTI's VOC chain estimated from these rates (:func:`chain_terms`; the numbers come from
the `voc` presets of config.yaml and the VOC split sizes)::

    hours = ( 10,582 × 60 / train + 10,582 / seeds + 10,582 / IRN
              + 79,365 × 4 / DeepLab-V1 train + 1,449 / inference + 1,449 / CRF ) / 3600

(rates in images/s; once with the plain rates, once with the fast ones where a stage has a switch). It
leaves out what the formula does not name: IRN's relation-label CRF and its network's training
(``affinity_labels``, ``train_affinity``), the seed and mask evaluations, and JPEG decoding (batches are
prepared before the timing, as in ``wsss_core.benchmarks.stages``).

Every measurement runs in a fresh process (``stages.run_isolated``, started from a fork server that has
imported the code once) under a time cap: ``--item-timeout-s`` per process, and never past the overall
``--budget-s`` (450 s by default, so that the whole command, start-up included, stays within 8 minutes;
what no longer fits is recorded as skipped). An exception, an out-of-memory error, a crash or a timeout
becomes a failed row; the proof goes on. Peak memory is ``torch.cuda.max_memory_allocated`` of that
process, reset after the warm-up (peak RSS on CPU).

It writes ``<output-dir>/benchmarks.md`` (the tables) and ``benchmarks.json`` (every figure, the settings,
the device name, torch version and date), each atomically. Without a CUDA device it stops, unless
``--tiny``: the same code path at tiny sizes on CPU (the synthetic presets' small backbones, 64×48
images, batch 2, one timed step), which must be written elsewhere than ``docs/`` (``--output-dir``).
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import pkgutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from wsss_core import workflow_config
from wsss_core.benchmarks import random_walk, stages
from wsss_core.data.classes import class_names
from wsss_core.data.synth import PRESETS, SynthParams, generate_sample
from wsss_core.errors import summarize
from wsss_core.methods.base import build_method
from wsss_core.registry import Registry
from wsss_core.training.loop import autocast, resolve_precision
from wsss_core.utils.atomic import write_json, write_text
from wsss_core.utils.device import resolve_device
from wsss_core.utils.seeding import seed_everything

DEFAULT_PEAK_TFLOPS = 790.0  # H200 dense bf16 matrix peak
VOC_IMAGE = tuple(PRESETS["voc_scale"]["image_size"])  # (height, width): 375×500, a typical VOC image
VOC_SPLITS = {"train_aug": PRESETS["voc_scale"]["num_train_aug"], "val": PRESETS["voc_scale"]["num_val"]}
TINY_IMAGE = (48, 64)
REFINE_IMAGE = (480, 640)  # the per-image refinement target
TINY_REFINE_IMAGE = (48, 64)
# Packages whose modules the fork server imports once, so that each measurement process starts at once.
PRELOAD_PACKAGES = ("wsss_core.methods", "wsss_core.segmentation", "wsss_core.refine", "wsss_core.stages")


@dataclass(frozen=True)
class ProofSettings:
    """What every item builder needs: the config, the scale and the shared measurement options."""

    config: Mapping[str, Any]
    tiny: bool
    device: str
    threads: int
    seed: int = 0

    @property
    def preset(self) -> str:
        """The dataset whose presets size the networks: ``voc`` (paper scale) or ``synth`` (tiny)."""
        return "synth" if self.tiny else "voc"

    @property
    def num_classes(self) -> int:
        classes = workflow_config.dataset_config(self.config, self.preset).get("classes", self.preset)
        return len(class_names(classes))

    @property
    def image_size(self) -> tuple[int, int]:
        return TINY_IMAGE if self.tiny else VOC_IMAGE

    def steps(self, paper: int) -> tuple[int, int]:
        """(warm-up, timed) steps: a few of each at paper scale, one timed step when tiny."""
        return (0, 1) if self.tiny else (3, paper)

    def size_text(self, size: tuple[int, int] | None = None) -> str:
        """``W×H`` of an image size (default: the synthetic images)."""
        height, width = size or self.image_size
        return f"{width}×{height}"

    def common(self) -> dict[str, Any]:
        return {"device": self.device, "threads": self.threads, "seed": self.seed, "num_classes": self.num_classes}


@dataclass(frozen=True)
class ProofItem:
    """One measured row: ``target(variant, args, queue)`` run in a fresh process per variant."""

    name: str
    title: str
    stage: str  # the pipeline stage whose rate it gives
    target: Callable[[str, Mapping[str, Any], Any], None]
    args: Mapping[str, Any]
    variants: tuple[str, ...] = ("plain", "fast")
    switches: str = "bf16 autocast"


ItemBuilder = Callable[[ProofSettings], ProofItem]
PROOF_ITEMS: Registry[ItemBuilder] = Registry("GPU proof item")
# The default order: CTI's chain first (its rates make the estimate), then the other methods.
DEFAULT_ITEMS = (
    "cti_train", "cti_seeds", "irn_refine", "deeplab_v1_train", "deeplab_v1_infer", "deeplab_v1_crf",
    "mctformer_train", "toco_train", "mcc_train", "eca_train", "psa_refine", "deeplab_v2_train",
)


# ------------------------------------------------------------------------------- training steps
def _method_step_item(name: str, run: str, label: str, tiny_overrides: Mapping[str, Any],
                      settings: ProofSettings) -> ProofItem:
    """A method's training step timed by ``stages._measure`` in the middle of its schedule (of a VOC run:
    10,582 images per epoch), at the batch size of its config (2 when tiny)."""
    config = workflow_config.method_config(settings.config, settings.preset, run)
    if settings.tiny:
        config = workflow_config.deep_merge(config, tiny_overrides, f"tiny overrides of {run}")
        config["train"]["batch_size"] = 2
    batch = int(config["train"]["batch_size"])
    method = build_method(config["name"], config, settings.num_classes)
    steps_per_epoch = max(1, VOC_SPLITS["train_aug"] // batch)
    total = method.total_steps(steps_per_epoch)
    warmup, steps = settings.steps(10)
    args = {
        **settings.common(), "subject": "method", "method": run, "dataset": settings.preset,
        "method_config": config, "image_size": list(settings.image_size), "batch_size": batch,
        "steps": steps, "warmup": warmup, "precision": "bf16", "channels_last": False, "count_flops": True,
        "schedule": {"first_step": total // 2, "steps_per_epoch": steps_per_epoch, "total_steps": total},
    }
    model = config.get("model", {})
    backbone = model.get("backbone")
    if model.get("dino"):
        backbone = f"{backbone} + {model['dino']['backbone']} (frozen)"
    crop = config["train"].get("crop_size")
    title = f"{label} training step: {backbone}, crop {crop}, batch {batch}"
    return ProofItem(name, title, "train_method", stages._measure, args)


@PROOF_ITEMS.register("cti_train")
def cti_train(settings: ProofSettings) -> ProofItem:
    """CTI's four-pass step (anchor, strong view, I-CTI, C-CTI with a full token memory)."""
    return _method_step_item("cti_train", "cti", "CTI", {"train": {"crop_size": 32}}, settings)


@PROOF_ITEMS.register("mctformer_train")
def mctformer_train(settings: ProofSettings) -> ProofItem:
    return _method_step_item("mctformer_train", "mctformer", "MCTformer-V2", {"train": {"crop_size": 32}}, settings)


_SINGLE_STAGE_TINY = {"train": {"crop_size": 48}, "losses": {"contrast": {"num_local": 2, "local_crop_size": 16}}}


@PROOF_ITEMS.register("toco_train")
def toco_train(settings: ProofSettings) -> ProofItem:
    return _method_step_item("toco_train", "toco", "ToCo", _SINGLE_STAGE_TINY, settings)


@PROOF_ITEMS.register("mcc_train")
def mcc_train(settings: ProofSettings) -> ProofItem:
    return _method_step_item("mcc_train", "mcc", "MCC", _SINGLE_STAGE_TINY, settings)


@PROOF_ITEMS.register("eca_train")
def eca_train(settings: ProofSettings) -> ProofItem:
    return _method_step_item("eca_train", "eca", "ECA", {"train": {"crop_size": 48}, "losses": {"correspondence": {"view_size": 24}}},
                             settings)


def _segmentation_step_item(name: str, network: str, label: str, settings: ProofSettings) -> ProofItem:
    """A ``train_segmentation`` step (``stages.segmentation.<network>.train``), bf16 + channels-last when fast."""
    config = workflow_config.stage_params(settings.config, settings.preset, "segmentation", network, "train")
    if settings.tiny:
        config.update(crop_size=32, batch_size=2)
    warmup, steps = settings.steps(10)
    args = {
        **settings.common(), "subject": "segmentation", "network_config": config,
        "image_size": list(settings.image_size), "batch_size": int(config["batch_size"]), "steps": steps,
        "warmup": warmup, "precision": "bf16", "channels_last": True, "count_flops": True,
    }
    backbone = config.get("backbone") or f"resnet38 × {config.get('width', 1.0):g}"
    title = f"{label} training step: {backbone}, crop {config['crop_size']}, batch {config['batch_size']}"
    return ProofItem(name, title, "train_segmentation", stages._measure, args, switches="bf16 autocast + channels-last")


@PROOF_ITEMS.register("deeplab_v2_train")
def deeplab_v2_train(settings: ProofSettings) -> ProofItem:
    return _segmentation_step_item("deeplab_v2_train", "deeplab_v2", "DeepLab-V2", settings)


@PROOF_ITEMS.register("deeplab_v1_train")
def deeplab_v1_train(settings: ProofSettings) -> ProofItem:
    return _segmentation_step_item("deeplab_v1_train", "deeplab_v1_resnet38", "DeepLab-V1 LargeFOV", settings)


# ------------------------------------------------------------------------------------ seed export
def _seed_export(variant: str, args: Mapping[str, Any], queue: Any) -> None:
    """Runs in a fresh process: a method's ``infer_seeds`` per image, as ``export_seeds`` calls it."""
    from wsss_core.stages.export_seeds import RandomInitCatalog

    torch.set_num_threads(args["threads"])
    seed_everything(args["seed"])
    device = resolve_device(args["device"])
    method = build_method(args["method_config"]["name"], args["method_config"], args["num_classes"])
    model = method.build_model(RandomInitCatalog()).to(device).eval()
    dtype = resolve_precision(args["precision"], device) if variant == "fast" else None
    params = SynthParams(image_size=tuple(args["image_size"]))
    samples = [generate_sample(args["seed"], index, params) for index in range(args["images"])]
    labels = np.ones(args["num_classes"], np.float32)  # every class present: the most maps per image

    def export(index: int) -> None:
        method.infer_seeds(model, samples[index % len(samples)].image, labels)  # ends with .cpu(): synchronised

    with torch.inference_mode(), autocast(device, dtype):
        for index in range(args["warmup"]):
            export(index)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        for index in range(args["images"]):
            export(index)
        seconds = time.perf_counter() - started
    queue.put({"variant": variant, "precision": "fp32" if dtype is None else "bfloat16",
               "images_per_second": args["images"] / seconds, **stages.memory_report(device)})


@PROOF_ITEMS.register("cti_seeds")
def cti_seeds(settings: ProofSettings) -> ProofItem:
    """CTI's seeds of one VOC-size image with all 20 classes present (single scale + flip)."""
    config = workflow_config.method_config(settings.config, settings.preset, "cti")
    args = {**settings.common(), "method_config": config, "image_size": list(settings.image_size),
            "images": 2 if settings.tiny else 20, "warmup": 0 if settings.tiny else 3, "precision": "bf16"}
    title = f"CTI seed export per {settings.size_text()} image: {config['model']['backbone']}, all classes, + flip"
    return ProofItem("cti_seeds", title, "export_seeds", _seed_export, args)


# ------------------------------------------------------------------------------------- refinement
def _refinement(variant: str, args: Mapping[str, Any], queue: Any) -> None:
    """Runs in a fresh process: ``random_walk._pipeline`` (network + affinities + walk), as images/s."""
    reports: list[dict[str, Any]] = []

    class _Collect:
        put = reports.append

    random_walk._pipeline(args["refiner"], dict(args), _Collect())
    report = reports[0]
    memory = report["peak_gpu_gib"] * 1024 if "peak_gpu_gib" in report else report["peak_rss_gib"] * 1024
    kind = "torch.cuda.max_memory_allocated" if "peak_gpu_gib" in report else "peak RSS (ru_maxrss)"
    queue.put({"variant": variant, "precision": "fp32", "images_per_second": 1.0 / report["seconds"],
               "seconds_per_image": report["seconds"], "peak_memory_mib": memory, "memory_kind": kind})


def _refinement_item(name: str, refiner: str, label: str, settings: ProofSettings) -> ProofItem:
    stage = workflow_config.stage_params(settings.config, settings.preset, "refine", refiner)
    network = {**stage["settings"], "weights": None}
    height, width = TINY_REFINE_IMAGE if settings.tiny else REFINE_IMAGE
    args = {**settings.common(), "refiner": refiner, "settings": network, "height": height, "width": width,
            "classes": 3, "warmup": 0 if settings.tiny else 2, "repeats": 1 if settings.tiny else 5}
    backbone = network.get("backbone") or f"resnet38 × {network.get('width', 1.0):g}"
    title = f"{label} refinement per {settings.size_text((height, width))} image: {backbone}, affinities, walk"
    return ProofItem(name, title, "refine_random_walk", _refinement, args, variants=("plain",), switches="none")


@PROOF_ITEMS.register("irn_refine")
def irn_refine(settings: ProofSettings) -> ProofItem:
    return _refinement_item("irn_refine", "irn", "IRN", settings)


@PROOF_ITEMS.register("psa_refine")
def psa_refine(settings: ProofSettings) -> ProofItem:
    return _refinement_item("psa_refine", "psa", "PSA", settings)


# -------------------------------------------------------------------------- segmentation inference
def _segmentation_inference(variant: str, args: Mapping[str, Any], queue: Any) -> None:
    """Runs in a fresh process: ``infer_segmentation``'s network segmenter (multi-scale, flip as configured)
    of a random-init network, per image, without the CRF (measured apart)."""
    from wsss_core.segmentation import build_segmentation_network
    from wsss_core.stages.export_seeds import RandomInitCatalog
    from wsss_core.stages.infer_segmentation import network_segmenter

    torch.set_num_threads(args["threads"])
    seed_everything(args["seed"])
    device = resolve_device(args["device"])
    train = args["network_config"]
    network = build_segmentation_network(train["network"], args["num_classes"] + 1, train, RandomInitCatalog())
    checkpoint = {"network": train["network"], "num_labels": args["num_classes"] + 1, "stage_config": train,
                  "model": network.state_dict()}
    del network
    segment = network_segmenter(checkpoint, args["inference_config"], device)
    params = SynthParams(image_size=tuple(args["image_size"]))
    images = [generate_sample(args["seed"], index, params).image for index in range(args["images"])]
    for index in range(args["warmup"]):
        segment(images[index % len(images)])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for image in images:
        segment(image)  # returns a numpy array: synchronised
    seconds = time.perf_counter() - started
    queue.put({"variant": variant, "precision": "fp32", "images_per_second": len(images) / seconds,
               **stages.memory_report(device)})


@PROOF_ITEMS.register("deeplab_v1_infer")
def deeplab_v1_infer(settings: ProofSettings) -> ProofItem:
    train = workflow_config.stage_params(settings.config, settings.preset, "segmentation", "deeplab_v1_resnet38",
                                         "train")
    inference = workflow_config.stage_params(settings.config, settings.preset, "segmentation",
                                             "deeplab_v1_resnet38", "inference")
    args = {**settings.common(), "network_config": train, "inference_config": inference,
            "image_size": list(settings.image_size), "images": 1 if settings.tiny else 10,
            "warmup": 0 if settings.tiny else 2}
    scales = ", ".join(f"{float(scale):g}" for scale in inference["scales"])
    title = (f"DeepLab-V1 LargeFOV inference per {settings.size_text()} image: resnet38 × {train.get('width', 1.0):g}, "
             f"scales {scales}{', flip' if inference.get('flip') else ''}, no CRF")
    return ProofItem("deeplab_v1_infer", title, "infer_segmentation", _segmentation_inference, args,
                     variants=("plain",), switches="none")


def _dense_crf(variant: str, args: Mapping[str, Any], queue: Any) -> None:
    """Runs in a fresh process: the dense CRF of ``infer_segmentation`` on one image (CPU, pydensecrf)."""
    from wsss_core.refine.crf import CRFParams, crf_probabilities

    params = CRFParams.load(args["crf"], "stages.segmentation.deeplab_v1_resnet38.inference.crf")
    rng = np.random.default_rng(args["seed"])
    sample = generate_sample(args["seed"], 0, SynthParams(image_size=tuple(args["image_size"])))
    logits = rng.standard_normal((args["num_classes"] + 1, *args["image_size"])).astype(np.float32)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=0, keepdims=True)
    started = time.perf_counter()
    for _ in range(args["images"]):
        crf_probabilities(sample.image, probabilities, params)
    seconds = time.perf_counter() - started
    queue.put({"variant": variant, "precision": "fp32", "images_per_second": args["images"] / seconds,
               **stages.memory_report(torch.device("cpu"))})


@PROOF_ITEMS.register("deeplab_v1_crf")
def deeplab_v1_crf(settings: ProofSettings) -> ProofItem:
    inference = workflow_config.stage_params(settings.config, settings.preset, "segmentation",
                                             "deeplab_v1_resnet38", "inference")
    args = {**settings.common(), "crf": inference["crf"], "image_size": list(settings.image_size),
            "images": 1 if settings.tiny else 3}
    title = f"dense CRF after DeepLab-V1 inference per {settings.size_text()} image (CPU, one thread)"
    return ProofItem("deeplab_v1_crf", title, "infer_segmentation", _dense_crf, args, variants=("plain",),
                     switches="none")


# --------------------------------------------------------------------------------- the VOC chain
@dataclass(frozen=True)
class ChainTerm:
    """One term of the chain estimate: ``images`` processed by ``stage`` at the rate of ``item``."""

    stage: str
    item: str
    images: int
    formula: str


def chain_terms(config: Mapping[str, Any]) -> tuple[ChainTerm, ...]:
    """CTI's VOC chain (``voc`` presets of config.yaml: CTI's epochs, DeepLab-V1's iterations and batch)
    over the VOC split sizes: train_aug images × epochs of training, seeds and IRN of every train_aug image,
    DeepLab-V1 iterations × batch images, inference of every val image."""
    cti = workflow_config.method_config(config, "voc", "cti")["train"]
    deeplab = workflow_config.stage_params(config, "voc", "segmentation", "deeplab_v1_resnet38", "train")
    train_aug, val = VOC_SPLITS["train_aug"], VOC_SPLITS["val"]
    epochs, iterations, batch = int(cti["epochs"]), int(deeplab["iterations"]), int(deeplab["batch_size"])
    return (
        ChainTerm(f"train_method (CTI, {epochs} epochs)", "cti_train", train_aug * epochs,
                  f"{train_aug:,} × {epochs}"),
        ChainTerm("export_seeds (train_aug)", "cti_seeds", train_aug, f"{train_aug:,}"),
        ChainTerm("refine_random_walk IRN (train_aug; rate at 640×480)", "irn_refine", train_aug, f"{train_aug:,}"),
        ChainTerm("train_segmentation DeepLab-V1 ResNet-38", "deeplab_v1_train", iterations * batch,
                  f"{iterations:,} × {batch}"),
        ChainTerm("infer_segmentation network (val)", "deeplab_v1_infer", val, f"{val:,}"),
        ChainTerm("infer_segmentation dense CRF (val)", "deeplab_v1_crf", val, f"{val:,}"),
    )


def chain_estimate(rows: Mapping[str, Mapping[str, Any]], terms: Sequence[ChainTerm]) -> dict[str, Any]:
    """Seconds per chain term and in total, from the plain rates and from the fast ones (a term without a
    fast variant uses its plain rate); ``complete`` is False when a term's rate is missing."""
    estimate: dict[str, Any] = {"terms": [], "complete": {}, "hours": {}}
    totals = {"plain": 0.0, "fast": 0.0}
    complete = {"plain": True, "fast": True}
    for term in terms:
        row = rows.get(term.item) or {}
        variants, declared = row.get("variants", {}), row.get("declared", ("plain",))
        entry: dict[str, Any] = {"stage": term.stage, "item": term.item, "images": term.images,
                                 "formula": term.formula}
        for kind in ("plain", "fast"):
            rate = (variants.get(kind if kind in declared else "plain") or {}).get("images_per_second")
            if rate:
                entry[f"{kind}_seconds"] = term.images / rate
                totals[kind] += entry[f"{kind}_seconds"]
            else:
                entry[f"{kind}_seconds"] = None
                complete[kind] = False
        estimate["terms"].append(entry)
    estimate["complete"] = complete
    estimate["hours"] = {kind: totals[kind] / 3600 for kind in totals}
    return estimate


# ----------------------------------------------------------------------------------- the runner
def _probe(variant: str, args: Mapping[str, Any], queue: Any) -> None:
    """Runs in a fresh process: the device the measurements will see."""
    device = resolve_device(args["device"])
    report = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
              "device_name": "CPU"}
    if device.type == "cuda":
        report["device_name"] = torch.cuda.get_device_name(device)
        report["bf16_supported"] = torch.cuda.is_bf16_supported()
    queue.put(report)


@dataclass
class Runner:
    """Runs items variant by variant in fresh processes under the per-process cap and the overall budget."""

    budget_s: float
    item_timeout_s: float
    start_method: str = "forkserver"
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    def run(self, item: ProofItem) -> dict[str, Any]:
        """The row of one item: its variants' reports, or their errors."""
        row: dict[str, Any] = {"name": item.name, "title": item.title, "stage": item.stage,
                               "switches": item.switches, "declared": list(item.variants), "variants": {},
                               "errors": {}}
        for variant in item.variants:
            cap = min(self.item_timeout_s, self.remaining())
            if cap < 5:
                row["errors"][variant] = f"skipped: the {self.budget_s:.0f} s budget was spent"
                continue
            began = time.monotonic()
            # FLOPs are the same in every variant (same network and inputs): count them once, in the first
            # variant that runs, since the counted step is slow (Python dispatch of every op)
            counted = any("flops_per_step" in report for report in row["variants"].values())
            args = {**item.args, "count_flops": bool(item.args.get("count_flops")) and not counted}
            try:
                report = stages.run_isolated(item.target, variant, args, cap, self.start_method)
            except stages.BenchmarkProcessError as error:  # an item's failure is a row, not the end of the proof
                row["errors"][variant] = error.reason
            except Exception as error:  # noqa: BLE001  (e.g. the process could not start)
                row["errors"][variant] = summarize(error)
            else:
                row["variants"][variant] = report
            row.setdefault("wall_seconds", {})[variant] = round(time.monotonic() - began, 1)
        if "plain" in row["variants"] and "fast" in row["variants"]:
            row["fast_over_plain"] = stages.fast_over_plain(row["variants"]["plain"], row["variants"]["fast"])
        row["ok"] = not row["errors"]
        return row


def run_items(items: Sequence[ProofItem | Callable[[], ProofItem]], runner: Runner) -> list[dict[str, Any]]:
    """Every item's row; an item whose construction raises is a failed row too."""
    rows = []
    for entry in items:
        try:
            item = entry if isinstance(entry, ProofItem) else entry()
        except Exception as error:  # noqa: BLE001
            name = getattr(entry, "item_name", getattr(entry, "__name__", "item"))
            rows.append({"name": name, "title": name, "stage": "", "switches": "", "declared": [], "variants": {},
                         "errors": {"build": summarize(error)}, "ok": False})
            continue
        rows.append(runner.run(item))
    return rows


def add_flop_rates(rows: Sequence[dict[str, Any]], peak_tflops: float) -> None:
    """Achieved TFLOP/s of every variant of an item whose FLOPs one variant counted (per step, the same
    in all), and ``peak_fraction`` of the fast variant: its TFLOP/s over the bf16 dense peak."""
    for row in rows:
        counted = [report["flops_per_step"] for report in row["variants"].values() if "flops_per_step" in report]
        if not counted:
            continue
        for report in row["variants"].values():
            report.setdefault("flops_per_step", counted[0])
            report["tflops_per_second"] = report["flops_per_step"] / report["seconds_per_step"] / 1e12
        fast = row["variants"].get("fast")
        if fast:
            fast["peak_fraction"] = fast["tflops_per_second"] / peak_tflops


# ---------------------------------------------------------------------------------------- output
def _number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _tflops(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def markdown_report(report: Mapping[str, Any]) -> str:
    """The tables of ``benchmarks.md``."""
    env, settings = report["environment"], report["settings"]
    tiny = settings["tiny"]
    memory = "peak RSS of the process (CPU)" if env["device"].startswith("cpu") else (
        "`torch.cuda.max_memory_allocated` of the process, reset after the warm-up")
    lines = [
        "# GPU proof (TINY CPU code-path check, not a measurement)" if tiny else "# GPU proof at paper scale",
        "",
        f"Device **{env['device_name']}** (`{env['device']}`), torch {env['torch']}, CUDA {env.get('cuda')}; "
        f"{report['date']}; wall time {report['wall_seconds']:.0f} s of a {settings['budget_s']:.0f} s budget. "
        f"Command: `{report['command']}`.",
        "",
        "Random-init weights, synthetic images "
        + ("at tiny sizes" if tiny else "at VOC resolution") + ", hyper-parameters of `config.yaml` "
        f"(`{settings['preset']}` presets). *plain*: fp32, NCHW; *fast*: the stage's speed switches "
        f"(column *switches*); fused attention (SDPA) in both; seeded as the stages are (cuDNN deterministic, "
        f"no autotuning). Peak memory: {memory}. TFLOP/s: FLOPs of one "
        f"step by `FlopCounterMode` over the measured step time; % of peak: *fast* against {settings['peak_tflops']:g} "
        "TFLOP/s (bf16 dense). How: `wsss_core/benchmarks/gpu_proof.py`.",
        "",
        "| item | switches | plain images/s | fast images/s | fast / plain | plain peak MiB | fast peak MiB "
        "| plain TFLOP/s | fast TFLOP/s | % of peak | status |",
        "|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for row in report["rows"]:
        plain, fast = row["variants"].get("plain", {}), row["variants"].get("fast", {})
        ratio = (row.get("fast_over_plain") or {}).get("images_per_second")
        fraction = fast.get("peak_fraction")
        status = "ok" if row["ok"] else "; ".join(f"{key}: {text}" for key, text in row["errors"].items())
        lines.append(
            f"| {row['title']} | {row['switches']} | {_number(plain.get('images_per_second'), 2)} | "
            f"{_number(fast.get('images_per_second'), 2)} | {_number(ratio, 2)}{'×' if ratio else ''} | "
            f"{_number(plain.get('peak_memory_mib'), 0)} | {_number(fast.get('peak_memory_mib'), 0)} | "
            f"{_tflops(plain.get('tflops_per_second'))} | {_tflops(fast.get('tflops_per_second'))} | "
            f"{_number(None if fraction is None else 100 * fraction, 1)} | {status.replace('|', '/')} |"
        )
    chain = report["chain"]
    lines += [
        "",
        "## CTI's VOC chain, estimated from the rates above",
        "",
        "hours = (" + " + ".join(f"{term['formula']} / rate of `{term['item']}`" for term in chain["terms"])
        + ") / 3600, rates in images/s; *fast* uses each stage's fast rate where it has one. Not included: IRN's "
        "relation-label CRF and training (`affinity_labels`, `train_affinity`), evaluations, JPEG decoding.",
        "",
        "| stage | images | plain s | fast s |",
        "|:---|---:|---:|---:|",
    ]
    for term in chain["terms"]:
        lines.append(f"| {term['stage']} | {term['formula']} | {_number(term['plain_seconds'], 0)} | "
                     f"{_number(term['fast_seconds'], 0)} |")
    totals = []
    for kind in ("plain", "fast"):
        prefix = "" if chain["complete"][kind] else "≥ "
        totals.append(f"{prefix}{chain['hours'][kind]:.2f} h")
    lines.append(f"| **total** | | **{totals[0]}** | **{totals[1]}** |")
    if not all(chain["complete"].values()):
        lines += ["", "≥: a term's rate is missing (its row failed), so the total leaves it out."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ main
def _preload_modules() -> list[str]:
    """Every module of the packages the measurements use, for the fork server. Not this module: each
    process re-runs the main module (``-m``) as ``__mp_main__``, and runpy warns when it is already loaded."""
    import importlib

    names = ["wsss_core.benchmarks.stages", "wsss_core.benchmarks.random_walk"]
    for package_name in PRELOAD_PACKAGES:
        package = importlib.import_module(package_name)
        names += [f"{package_name}.{info.name}" for info in pkgutil.iter_modules(package.__path__)
                  if not info.name.startswith("_")]
    return names


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="where benchmarks.md and benchmarks.json go (default docs; required with --tiny)")
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--items", nargs="+", default=list(DEFAULT_ITEMS), help="items to run, in this order")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="wall-time budget of the measurements (default 450 s: with start-up, within 8 min)")
    parser.add_argument("--item-timeout-s", type=float, default=120.0, help="cap per measurement process")
    parser.add_argument("--peak-tflops", type=float, default=DEFAULT_PEAK_TFLOPS,
                        help="dense bf16 peak of the GPU for the %% of peak (H200: 790)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per process (default 1 with --tiny, else min(8, cores))")
    parser.add_argument("--tiny", action="store_true", help="the same code path at tiny sizes on CPU")
    parser.add_argument("--start-method", default="forkserver", choices=("forkserver", "spawn", "fork"),
                        help="how measurement processes start: forkserver (default: a clean server that imported "
                        "the code once), spawn (a new interpreter each), fork (of this process: fastest, for "
                        "the CPU check; this process never touches CUDA)")
    options = parser.parse_args(argv)
    if options.tiny and (options.output_dir is None or options.output_dir.resolve() == Path("docs").resolve()):
        parser.error("--tiny checks the code path on CPU and measures nothing: give --output-dir, not docs/")
    if options.tiny:
        options.device = "cpu"
    unknown = [name for name in options.items if name not in PROOF_ITEMS]
    if unknown:
        parser.error(f"--items {unknown} are unknown; known: {', '.join(PROOF_ITEMS.names())}")
    if options.peak_tflops <= 0 or options.budget_s <= 0 or options.item_timeout_s <= 0:
        parser.error("--peak-tflops, --budget-s and --item-timeout-s must be positive")
    return options


def main(argv: Sequence[str] | None = None,
         extra_items: Sequence[ProofItem | Callable[[], ProofItem]] = ()) -> dict[str, Any]:
    """Run the proof and write its files; returns the report. ``extra_items`` are appended (tests)."""
    options = parse_arguments(argv)
    if not options.config.is_file():
        raise SystemExit(f"config file {options.config} does not exist; pass --config path/to/config.yaml")
    config = yaml.safe_load(options.config.read_text())
    threads = options.threads or (1 if options.tiny else min(8, os.cpu_count() or 1))
    if options.start_method == "forkserver":
        multiprocessing.set_forkserver_preload(_preload_modules())
    runner = Runner(options.budget_s, options.item_timeout_s, options.start_method)
    try:
        environment = stages.run_isolated(_probe, "probe", {"device": options.device}, 120, options.start_method)
    except stages.BenchmarkProcessError as error:
        raise SystemExit(f"the device probe failed ({error.reason}); check --device, or try --start-method spawn")
    if environment["device"].startswith("cpu") and not options.tiny:
        raise SystemExit("no CUDA device is visible: the GPU proof measures a GPU; run it where one is, "
                         "or use --tiny --output-dir DIR for the CPU check of the code path")
    settings = ProofSettings(config=config, tiny=options.tiny, device=environment["device"], threads=threads)
    builders: list[ProofItem | Callable[[], ProofItem]] = []
    for name in options.items:
        builder = _bound(PROOF_ITEMS.get(name), settings, name)
        builders.append(builder)
    rows = run_items([*builders, *extra_items], runner)
    add_flop_rates(rows, options.peak_tflops)
    by_name = {row["name"]: row for row in rows}
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python -m wsss_core.benchmarks.gpu_proof", *(argv if argv is not None else sys.argv[1:])]),
        "environment": environment,
        "settings": {"tiny": options.tiny, "preset": settings.preset, "budget_s": options.budget_s,
                     "item_timeout_s": options.item_timeout_s, "peak_tflops": options.peak_tflops,
                     "threads": threads, "items": list(options.items), "start_method": options.start_method},
        "wall_seconds": time.monotonic() - runner.started,
        "rows": rows,
        "chain": chain_estimate(by_name, chain_terms(config)),
    }
    output_dir = options.output_dir or Path("docs")
    write_json(output_dir / "benchmarks.json", report)
    write_text(output_dir / "benchmarks.md", markdown_report(report))
    print(markdown_report(report), end="")
    return report


def _bound(builder: ItemBuilder, settings: ProofSettings, name: str) -> Callable[[], ProofItem]:
    """``builder(settings)`` deferred, so that a builder that raises becomes that item's failed row."""

    def build() -> ProofItem:
        return builder(settings)

    build.item_name = name  # type: ignore[attr-defined]
    return build


if __name__ == "__main__":
    # Run through the package module, not ``__main__``: the measurement processes unpickle their targets
    # by module name, and a fork server's ``__main__`` is not this file.
    from wsss_core.benchmarks import gpu_proof

    gpu_proof.main()
