"""Typed settings (issue 14, item 1): every bad value and every misspelt key of config.yaml — at each
nesting level — stops the workflow when it is parsed, with one line naming the key path and what is
allowed; the shipped config passes; the types are what the methods read."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, TypeAdapter

from wsss_core import workflow_config as resolve
from wsss_core.errors import ConfigError
from wsss_core.methods import METHODS, build_method
from wsss_core.stages.settings import section_type
from wsss_core.workflow_checks import parse_time_problem

REPOSITORY = Path(__file__).resolve().parents[1]
SCHEMA = REPOSITORY / "workflow" / "schemas" / "config.schema.yaml"
CONFIG: dict[str, Any] = yaml.safe_load((REPOSITORY / "config.yaml").read_text())


def _with(path: str, value: Any) -> dict[str, Any]:
    """config.yaml with ``value`` at the dotted ``path`` (created if absent)."""
    config = copy.deepcopy(CONFIG)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return config


def _problem(config: dict[str, Any]) -> str | None:
    return parse_time_problem(config, SCHEMA, argv=["-n"], environ={}, workdir=REPOSITORY, cuda_devices=0)


def test_the_shipped_config_has_no_problem() -> None:
    assert _problem(copy.deepcopy(CONFIG)) is None


# (config path, bad value, what the one line must say: the key path as the user wrote it, and the rule)
BAD_VALUES = [
    # the issue's cases
    ("methods.cti.params.train.epochs", -1, "methods.cti.params.train.epochs = -1: must be greater than 0"),
    ("methods.cti.params.train.batch_size", 0, "methods.cti.params.train.batch_size = 0: must be greater than 0"),
    ("methods.cti.params.train.lr", -0.1, "methods.cti.params.train.lr = -0.1: must be greater than 0"),
    ("stages.segmentation.deeplab_v2.train.iterations", -5,
     "stages.segmentation.deeplab_v2.train.iterations = -5: must be greater than 0"),
    ("device", "cuda", "device is 'cuda', but the jobs run on this machine and no CUDA device is visible"),
    # every method's block, a dataset preset, a variant, a method that extends another (MCC = ToCo + ...)
    ("methods.cam.params.train.epochs", 0, "methods.cam.params.train.epochs = 0: must be greater than 0"),
    ("methods.mctformer.params.train.batch_size", 0, "methods.mctformer.params.train.batch_size = 0"),
    ("methods.swtformer.params.train.lr", 0, "methods.swtformer.params.train.lr = 0: must be greater than 0"),
    ("methods.vitpcm.params.train.epochs", -2, "methods.vitpcm.params.train.epochs = -2"),
    ("methods.afa.params.train.iterations", -5, "methods.afa.params.train.iterations = -5"),
    ("methods.eca.params.losses.seed_selection.fraction", 1.5, "methods.eca.params.losses.seed_selection.fraction = 1.5: must be less than or equal to 1"),
    ("methods.toco.params.train.iterations", -5, "methods.toco.params.train.iterations = -5: must be greater than 0"),
    ("methods.mcc.params.losses.masking.ratio", 2.0, "methods.mcc.params.losses.masking.ratio = 2.0: must be less than or equal to 1"),
    ("methods.cti.params.presets.synth.train.epochs", -1,
     "methods.cti.params.presets.synth.train.epochs = -1: must be greater than 0"),
    ("variants.cti_bcam.params", {"train": {"lr": -1.0}}, "variants.cti_bcam.params.train.lr = -1.0: must be greater than 0"),
    ("methods.toco.params.inference.flip_fuse", "product", "methods.toco.params.inference.flip_fuse = 'product': must be 'sum', 'max' or 'mean'"),
    ("methods.cam.params.model.batch_norm", "sync", "methods.cam.params.model.batch_norm = 'sync': must be 'fixed', 'frozen' or 'train'"),
    ("methods.cti.params.train.epochs", "ten", "methods.cti.params.train.epochs = 'ten': must be a valid integer"),
    # a rule across two keys: the dual-threshold band (ToCo's type, MCC through its base, AFA's and so ECA's)
    ("methods.toco.params.losses.thresholds.low", 0.8, "methods.toco.params.losses.thresholds = a mapping: low (0.8) must not exceed high (0.7)"),
    ("methods.eca.params.losses.thresholds.high", 0.2, "methods.eca.params.losses.thresholds = a mapping: low (0.35) must not exceed high (0.2)"),
    ("methods.toco.params.losses.weights.reg", 0.05, "methods.toco.params.losses.weights = a mapping: losses.weights.reg must be 0"),
    ("methods.eca.params.losses.correspondence.sign", "minus", "methods.eca.params.losses.correspondence.sign = 'minus': must be 'corrected' or 'printed'"),
    ("methods.eca.params.losses.correspondence.view_size", 1024,
     "methods.eca.params = a mapping: losses.correspondence.view_size (1024) must not exceed train.crop_size (512)"),
    ("methods.cti.params.train.scale", [1.0, 0.3], "methods.cti.params.train.scale = [1.0, 0.3]: must satisfy 0 < low ≤ high"),
    ("methods.cti.params.train.rand_augment", "augmix-m5", "methods.cti.params.train.rand_augment = 'augmix-m5': must be a timm RandAugment string"),
    ("methods.cti.params.model.blocks.train_class_patch", "last3",
     "methods.cti.params.model.blocks.train_class_patch = 'last3': must be all, last_half, after_infusion, last:N, from:N"),
    # stage sections
    ("stages.evaluate_seeds.thresholds.step", 0, "stages.evaluate_seeds.thresholds.step = 0: must be greater than 0"),
    ("stages.refine.irn.train.batch_size", 0, "stages.refine.irn.train.batch_size = 0: must be greater than 0"),
    ("stages.refine.irn.train.presets.synth.lr", -0.1, "stages.refine.irn.train.presets.synth.lr = -0.1"),
    ("stages.segmentation.deeplab_v2.inference.fuse", "min", "stages.segmentation.deeplab_v2.inference.fuse = 'min': must be 'max' or 'mean'"),
    ("stages.train_method.precision", "fp16", "stages.train_method.precision = 'fp16': must be 'fp32', 'bf16' or 'auto'"),
    ("stages.reporting.num_samples", -1, "stages.reporting.num_samples = -1: must be greater than or equal to 0"),
    # the typed CRF, IRN and PSA blocks (wsss_core/refine/settings.py) and the stages that read them
    ("stages.refine.crf.iterations", 0, "stages.refine.crf.iterations = 0: must be greater than 0"),
    ("stages.refine.crf.bilateral_sxy", "wide", "stages.refine.crf.bilateral_sxy = 'wide': must be a valid number"),
    ("stages.refine.crf.background.mode", "sigmoid", "stages.refine.crf.background.mode = 'sigmoid': must be 'threshold' or 'power'"),
    ("stages.refine.crf.background", {"mode": "power", "alpha": None}, "stages.refine.crf.background = a mapping: mode 'power' needs alpha"),
    ("methods.vitpcm.pipeline.refine_overrides.crf.iterations", -1, "methods.vitpcm.pipeline.refine_overrides.crf.iterations = -1: must be greater than 0"),
    ("stages.refine.irn.settings.beta", "ten", "stages.refine.irn.settings.beta = 'ten'"),
    ("stages.refine.irn.settings.preset", "seam", "stages.refine.irn.settings.preset = 'seam': must be 'irn', 'rib', 'rib_coco' or 'sipe'"),
    ("stages.refine.irn.settings.source_region", "all", "stages.refine.irn.settings.source_region = 'all': must be 'irn_crop' or 'in_bounds'"),
    ("stages.refine.irn.label_crf", {"iterations": 0}, "stages.refine.irn.label_crf.iterations = 0: must be greater than 0"),
    ("stages.refine.psa.settings.low_alpha", 40, "stages.refine.psa.settings = a mapping: low_alpha (40) must be below high_alpha (32)"),
    ("stages.refine.psa.settings.background", "median", "stages.refine.psa.settings.background = 'median': must be 'power' or 'constant'"),
    ("stages.refine.psa.train.long_side_range", [768, 448], "stages.refine.psa.train = a mapping: long_side_range must be [low, high] with low <= high"),
    ("stages.refine.irn.train.long_side_range", [448, 768], "stages.refine.irn.train = a mapping: scale_range and long_side_range are exclusive"),
    ("stages.refine.psa.train.epochs", None, "stages.refine.psa.train = a mapping: set epochs (IRN 3, PSA 8, MCTformer 5) or iterations"),
    ("stages.refine.psa.train.color_jitter", [0.3, 0.3], "stages.refine.psa.train.color_jitter = [0.3, 0.3]"),
    ("stages.segmentation.deeplab_v1_resnet38.inference.crf.bilateral_srgb", -5, "stages.segmentation.deeplab_v1_resnet38.inference.crf.bilateral_srgb = -5: must be greater than 0"),
    ("stages.decoder_inference.crf.iterations", 2.5, "stages.decoder_inference.crf.iterations = 2.5: must be a valid integer"),
    # the segmentation network's keys (wsss_core/segmentation/settings.py), which train_segmentation reads
    ("stages.segmentation.deeplab_v2.train.aspp_rates", [], "stages.segmentation.deeplab_v2.train.aspp_rates = []: List should have at least 1 item"),
    ("stages.segmentation.deeplab_v2.train.backbone", None, "stages.segmentation.deeplab_v2.train = a mapping: deeplab_v2 needs backbone"),
    ("stages.segmentation.deeplab_v1_resnet38.train.width", 0, "stages.segmentation.deeplab_v1_resnet38.train.width = 0: must be greater than 0"),
    # run-time values (wsss_core.runtime)
    ("num_workers", -1, "config.yaml: num_workers: -1 is less than the minimum of 0"),
    ("stages.train_method.log_every", 0, "stages.train_method.log_every is 0; a run-time setting that must be an integer >= 1"),
    # pretraining: (wsss_core.pretraining.settings; a recipe's log_every is run-time, wsss_core.runtime)
    ("pretraining.backbones.vit_synth.epochs", 0,
     "pretraining.backbones.vit_synth.epochs = 0: must be greater than or equal to 1"),
    ("pretraining.backbones.dino_vit_synth.objective_args", {"momentum": 1.5},
     "pretraining.backbones.dino_vit_synth.objective_args.momentum = 1.5: must be less than or equal to 1"),
    ("pretraining.backbones.vit_synth.min_lr", 0.5,
     "pretraining.backbones.vit_synth = a mapping: min_lr (0.5) must not exceed lr (0.001)"),
    ("pretraining.pool.num_classes", 1, "pretraining.pool.num_classes = 1: must be greater than or equal to 2"),
    ("pretraining.backbones.vit_synth.log_every", 0,
     "pretraining.backbones.vit_synth.log_every is 0; a run-time setting that must be an integer >= 1"),
]

# (config path of a misspelt key, the value, what the line must say) — one per nesting level
TYPOS = [
    ("num_workerz", 2, "the top level: Additional properties are not allowed ('num_workerz' was unexpected); known keys there: "),
    ("datasets.synth.rooot", "x", "datasets.synth: Additional properties are not allowed ('rooot' was unexpected); known keys there: "),
    ("methods.cti.params.train.epoch", 5, "unknown key 'methods.cti.params.train.epoch' in config (known keys there: batch_size, crop_size, epochs,"),
    ("methods.cti.params.epochs", 5, "unknown key 'methods.cti.params.epochs' in config (known keys there: losses, model, seeds, train)"),
    # each nesting level of one method block (model / train / losses / seeds / inference), its preset, a variant
    ("methods.toco.params.crop_size", 64, "unknown key 'methods.toco.params.crop_size' in config (known keys there: inference, losses, model, seeds, train)"),
    ("methods.toco.params.model.backbon", "vit_synth", "unknown key 'methods.toco.params.model.backbon' in config (known keys there: aux_layer, backbone, "),
    ("methods.toco.params.model.projector.out_dims", 8, "unknown key 'methods.toco.params.model.projector.out_dims' in config (known keys there: bottleneck_dim, "),
    ("methods.toco.params.losses.contrast.temprature", 0.5, "unknown key 'methods.toco.params.losses.contrast.temprature' in config (known keys there: "),
    ("methods.toco.params.seeds.scale", [1.0], "unknown key 'methods.toco.params.seeds.scale' in config (known keys there: resize, scales)"),
    ("methods.afa.params.presets.synth.losses.schedul", {}, "unknown key 'methods.afa.params.presets.synth.losses.schedul' in config (known keys there: "),
    # a base's preset: named in the base (ToCo), not in the method that extends it (MCC, checked first)
    ("methods.toco.params.presets.synth.losses.schedul", {}, "unknown key 'methods.toco.params.presets.synth.losses.schedul' in config (known keys there: affinity_box_units, contrast, par, schedule, thresholds, weights)"),
    ("variants.mcc_baseline.params.losses.weights.afinity", 0.0, "unknown key 'variants.mcc_baseline.params.losses.weights.afinity' in config (known keys there: "),
    ("methods.mcc.params.losses.masking.ratoi", 0.5, "unknown key 'methods.mcc.params.losses.masking.ratoi' in config (known keys there: aux_cam_until, ratio, scale)"),
    ("methods.cam.params.seeds.scale", [1.0], "unknown key 'methods.cam.params.seeds.scale' in config (known keys there: interpolation, scales)"),
    ("methods.cti.params.presets.synth.train.epoch", 1, "unknown key 'methods.cti.params.presets.synth.train.epoch' in config (known keys there: "),
    ("variants.cti_bcam.params.losses.icti.enabeld", False, "unknown key 'variants.cti_bcam.params.losses.icti.enabeld' in config (known keys there: enabled, weight)"),
    ("stages.train_method.log_evry", 5, "unknown key 'stages.train_method.log_evry' in config (known keys there: channels_last, checkpoint_every,"),
    ("stages.evaluate_seed", {}, "unknown key 'stages.evaluate_seed' in config (known keys there: ablations, decoder_inference, evaluate_seeds,"),
    ("stages.evaluate_seeds.held_out.max_tune_image", 10, "unknown key 'stages.evaluate_seeds.held_out.max_tune_image' in config (known keys there: max_tune_images, tune_split)"),
    ("stages.segmentation.deeplab_v2.train.iteration", 10, "unknown key 'stages.segmentation.deeplab_v2.train.iteration' in config (known keys there: "),
    ("pretraining.pol", {}, "pretraining: Additional properties are not allowed ('pol' was unexpected)"),
    ("pretraining.pool.num_clases", 4, "unknown key 'pretraining.pool.num_clases' in config (known keys there: "),
    ("pretraining.backbones.vit_synth.epoch", 3,
     "unknown key 'pretraining.backbones.vit_synth.epoch' in config (known keys there: backbone, backbone_args, "),
    ("pretraining.backbones.dino_vit_synth.objective_args.momentun", 0.9,
     "unknown key 'pretraining.backbones.dino_vit_synth.objective_args.momentun' in config (known keys there: "),
    # the typed CRF, IRN and PSA blocks (wsss_core/refine/settings.py) and the stages that read them
    ("stages.refine.crf.iteration", 1, "unknown key 'stages.refine.crf.iteration' in config (known keys there: background, bilateral_compat,"),
    ("stages.refine.crf.background.threshold_form", "held_out", "unknown key 'stages.refine.crf.background.threshold_form' in config (known keys there: alpha, mode, threshold_from)"),
    ("stages.refine.irn.settings.walk_radious", 5, "unknown key 'stages.refine.irn.settings.walk_radious' in config (known keys there: backbone,"),
    ("stages.refine.psa.settings.logT", 6, "unknown key 'stages.refine.psa.settings.logT' in config (known keys there: background,"),
    ("stages.refine.psa.label_crf", {"bilateral_sxyy": 80}, "unknown key 'stages.refine.psa.label_crf.bilateral_sxyy' in config (known keys there: bilateral_compat,"),
    ("stages.refine.psa.train.epoch", 3, "unknown key 'stages.refine.psa.train.epoch' in config (known keys there: batch_size,"),
    ("stages.segmentation.deeplab_v1_resnet38.inference.crf.iteration", 3, "unknown key 'stages.segmentation.deeplab_v1_resnet38.inference.crf.iteration' in config"),
    ("stages.decoder_inference.crf.bilateral_rgb", 3, "unknown key 'stages.decoder_inference.crf.bilateral_rgb' in config"),
    ("stages.segmentation.deeplab_v1_resnet38.train.widht", 0.5, "unknown key 'stages.segmentation.deeplab_v1_resnet38.train.widht' in config (known keys there: "),
    ("methods.vitpcm.pipeline.refine_overrides.crf.bilateral_sxyy", 67, "unknown key 'methods.vitpcm.pipeline.refine_overrides.crf.bilateral_sxyy' in config (known keys there: background,"),
]


@pytest.mark.parametrize(("path", "value", "expected"), BAD_VALUES + TYPOS, ids=[case[0] for case in BAD_VALUES + TYPOS])
def test_a_bad_value_or_key_stops_the_parse_in_one_line_naming_it(path: str, value: Any, expected: str) -> None:
    problem = _problem(_with(path, value))
    assert problem is not None, f"{path} = {value!r} passed the parse-time checks"
    assert "\n" not in problem and problem.startswith("config.yaml: "), problem
    assert expected in problem, problem


def test_cti_layer_sets_accept_every_form_resolve_blocks_reads() -> None:
    for spec in ("last:3", "from:4", "all", [9, 10, 11]):
        assert _problem(_with("methods.cti.params.model.blocks.train_class_patch", spec)) is None, spec


def test_device_cuda_is_checked_only_where_the_jobs_run() -> None:
    config = _with("device", "cuda")
    assert parse_time_problem(config, SCHEMA, argv=["-n"], workdir=REPOSITORY, cuda_devices=1) is None
    assert parse_time_problem(_with("device", "cuda:1"), SCHEMA, argv=["-n"], workdir=REPOSITORY, cuda_devices=1) \
        .startswith("config.yaml: device is 'cuda:1', but the jobs run on this machine and 1 CUDA device(s)")
    # sent to a cluster, the submitting host need not have a GPU
    assert parse_time_problem(config, SCHEMA, argv=["-n", "--executor", "slurm"], workdir=REPOSITORY,
                              cuda_devices=0) is None


# ------------------------------------------------------------------------------ the types themselves
def test_every_method_declares_a_settings_type_that_reads_every_resolved_block() -> None:
    for dataset in CONFIG["datasets"]:
        for run in resolve.run_names(CONFIG):
            settings = resolve.method_settings(CONFIG, dataset, run)
            name = resolve.method_config(CONFIG, dataset, run)["name"]
            assert isinstance(settings, METHODS.get(name).settings_type), (dataset, run)


def test_a_default_written_out_or_left_out_is_the_same_job() -> None:
    """A job receives its method's typed settings, defaults filled in (the type's dump): whether config.yaml
    spells a default out or leaves it to the type, the job's identity is the same; a changed value is not."""
    assert "clip_grad_norm" not in CONFIG["methods"]["toco"]["params"].get("train", {})  # left to the type
    params = resolve.method_config(CONFIG, "synth", "toco")
    assert params["train"]["clip_grad_norm"] is None and params["name"] == "toco"
    assert params == {**resolve.method_settings(CONFIG, "synth", "toco").model_dump(mode="json"), "name": "toco"}
    written = _with("methods.toco.params.train.clip_grad_norm", None)
    assert resolve.job_config(written, "synth", "toco", {}) == resolve.job_config(CONFIG, "synth", "toco", {})
    changed = _with("methods.toco.params.train.clip_grad_norm", 1.0)
    assert resolve.method_config(changed, "synth", "toco")["train"]["clip_grad_norm"] == 1.0
    assert resolve.job_config(changed, "synth", "toco", {}) != resolve.job_config(CONFIG, "synth", "toco", {})


def test_every_method_block_is_its_typed_settings_round_trip() -> None:
    """The dump a job receives loads back to the same settings, for every dataset x method/variant."""
    for dataset in CONFIG["datasets"]:
        for run in resolve.run_names(CONFIG):
            params = resolve.method_config(CONFIG, dataset, run)
            method = METHODS.get(params["name"])
            assert method.load_settings(params) == resolve.method_settings(CONFIG, dataset, run), (dataset, run)


def test_config_yaml_does_not_repeat_a_default_of_a_method_type() -> None:
    """A method block writes only what differs from its settings type's defaults (the one copy of each
    default sits next to the code that uses it); presets and variants may restate one."""
    repeated = []
    for name, block in CONFIG["methods"].items():
        users = [METHODS.get(n).settings_type for n in CONFIG["methods"] if name in resolve.method_bases(CONFIG, n)]
        for path, value in _leaves(block.get("params", {})):
            if all(_default_at(settings_type, path) == ("default", value) for settings_type in users):
                repeated.append(f"methods.{name}.params.{'.'.join(path)} = {value!r}")
    assert not repeated, "config.yaml repeats type defaults: " + "; ".join(repeated)


def test_config_yaml_does_not_repeat_a_default_of_a_stage_type() -> None:
    """The same for the typed ``stages:`` sections (those whose jobs receive their type's dump)."""
    repeated = []
    for path, value in _leaves(CONFIG["stages"]):
        for cut in range(len(path) - 1, 0, -1):  # the deepest typed section holding the key
            section = section_type(path[:cut])
            if section is not None:
                if _default_at(section, path[cut:]) == ("default", value):
                    repeated.append(f"stages.{'.'.join(path)} = {value!r}")
                break
    assert not repeated, "config.yaml repeats stage type defaults: " + "; ".join(repeated)


def test_a_stage_default_written_out_or_left_out_is_the_same_job() -> None:
    """A typed stage section reaches its job as its type's dump: ``flip: true`` (DeepLab's default) written
    out is the same job; ``flip: false`` is another; a run-time key is in neither."""
    path = ("segmentation", "deeplab_v2", "train")
    assert "flip" not in CONFIG["stages"]["segmentation"]["deeplab_v2"]["train"]
    plain = resolve.stage_params(CONFIG, "synth", *path)
    assert plain["flip"] is True and "log_every" not in plain and plain["iterations"] == 600
    assert resolve.stage_params(_with("stages.segmentation.deeplab_v2.train.flip", True), "synth", *path) == plain
    assert resolve.stage_params(_with("stages.segmentation.deeplab_v2.train.flip", False), "synth", *path)["flip"] is False
    # the refinements are handed on as written (a method's refine_overrides go on top of them)
    assert section_type(("refine", "irn")) is None and section_type(("train_method",)) is not None


def _leaves(node: Any, path: tuple[str, ...] = ()) -> Any:
    for key, value in node.items():
        if key == "presets":
            continue
        if isinstance(value, dict) and value:
            yield from _leaves(value, (*path, key))
        else:
            yield (*path, key), value


def _default_at(settings_type: Any, path: tuple[str, ...]) -> tuple[str, Any]:
    """("default", the JSON form of the default) of the field at ``path``, or ("required", None)."""
    node = settings_type
    for index, key in enumerate(path):
        field = node.model_fields.get(key) if isinstance(node, type) and issubclass(node, BaseModel) else None
        if field is None or field.is_required():
            return ("required", None)
        if index == len(path) - 1:
            default = field.get_default(call_default_factory=True)
            return ("default", TypeAdapter(Any).dump_python(default, mode="json"))
        node = field.annotation
    return ("required", None)


def test_cam_reads_its_values_through_its_settings() -> None:
    params = resolve.method_config(CONFIG, "synth", "cam")
    method = build_method("cam", params, num_classes=20)
    assert method.settings.train.epochs == 8 and method.settings.train.crop_size == 96
    assert method.settings.train.resize_long == (96, 160) and method.settings.model.backbone == "resnet_synth"
    with pytest.raises(ConfigError, match=r"^method.train.lr = -1: must be greater than 0$"):
        build_method("cam", {**params, "train": {**params["train"], "lr": -1}}, num_classes=20)


def test_the_stage_types_leave_run_time_keys_to_the_runtime_module() -> None:
    settings = resolve.stage_settings(CONFIG, "synth")
    assert settings.train_method.precision == "fp32"
    assert not hasattr(settings.train_method, "log_every")
    assert settings.segmentation["deeplab_v2"].train.iterations == 600  # the synth preset
    assert resolve.stage_settings(CONFIG, "coco").segmentation["deeplab_v2"].train.iterations == 100000


# --------------------------------------------------------------------- MCC = ToCo + its own keys
def test_mcc_extends_toco_dataset_by_dataset() -> None:
    assert CONFIG["methods"]["mcc"]["base"] == "toco" and "pipeline" not in CONFIG["methods"]["mcc"]
    for dataset in ("synth", "voc", "coco"):
        toco = resolve.method_config(CONFIG, dataset, "toco")
        mcc = resolve.method_config(CONFIG, dataset, "mcc")
        assert mcc["losses"].pop("masking") and mcc.pop("name") == "mcc" and toco.pop("name") == "toco"
        assert sorted(mcc) == sorted(toco), (dataset, sorted(mcc))
        differing = sorted(f"{section}.{key}" for section in toco for key in toco[section]
                           if toco[section][key] != mcc[section][key])
        # MCC's own COCO values where ToCo's COCO preset differs (token losses, temperature)
        assert differing == (["losses.contrast", "losses.schedule"] if dataset == "coco" else []), (dataset, differing)
        assert resolve.pipeline_choice(CONFIG, dataset, "mcc") == resolve.pipeline_choice(CONFIG, dataset, "toco")
    assert resolve.method_config(CONFIG, "synth", "mcc")["losses"]["masking"] == {"ratio": 0.95, "scale": 2, "aux_cam_until": 360}
    assert resolve.method_config(CONFIG, "coco", "mcc")["losses"]["schedule"] == {
        "segmentation_after": 8000, "token_losses_after": -1, "segmentation_aux_cam_until": 12000}


def test_a_change_to_the_base_reaches_the_method_that_extends_it() -> None:
    config = _with("methods.toco.params.presets.synth.train.lr", 1.0e-4)
    assert resolve.method_config(config, "synth", "mcc")["train"]["lr"] == 1.0e-4


@pytest.mark.parametrize(("base", "message"), [
    ("tocoo", "methods.mcc.base names unknown method 'tocoo'"),
    ("mcc", "methods.mcc.base: the chain of bases mcc -> mcc is a cycle"),
])
def test_a_bad_base_is_named(base: str, message: str) -> None:
    problem = _problem(_with("methods.mcc.base", base))
    assert problem is not None and message in problem and "\n" not in problem, problem


def test_a_method_without_pipeline_or_base_is_named() -> None:
    config = copy.deepcopy(CONFIG)
    del config["methods"]["mcc"]["base"]
    config["methods"]["mcc"]["params"] = resolve.method_config(CONFIG, "voc", "mcc")
    del config["methods"]["mcc"]["params"]["name"]
    problem = _problem(config)
    assert problem is not None and "methods.mcc.pipeline.route is missing" in problem, problem


# ------------------------------------------------------------------------------ snakemake -n itself
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


@pytest.mark.slow  # Snakemake parses the workflow (seconds; a minute on a loaded 2-core machine)
@pytest.mark.parametrize(("overlay", "expected"), [
    ({"methods": {"cti": {"params": {"train": {"epochs": -1}}}}},
     "config.yaml: methods.cti.params.train.epochs = -1: must be greater than 0"),
    ({"stages": {"evaluate_seed": {}}}, "config.yaml: unknown key 'stages.evaluate_seed' in config"),
    ({"methods": {"toco": {"params": {"losses": {"contrast": {"temprature": 0.5}}}}}},
     "config.yaml: unknown key 'methods.toco.params.losses.contrast.temprature' in config"),
    ({"pretraining": {"backbones": {"vit_synth": {"epochs": 0}}}},
     "config.yaml: pretraining.backbones.vit_synth.epochs = 0: must be greater than or equal to 1"),
    ({"pretraining": {"backbones": {"vit_synth": {"epoch": 3}}}},
     "config.yaml: unknown key 'pretraining.backbones.vit_synth.epoch' in config"),
    ({"stages": {"refine": {"crf": {"iteration": 5}}}}, "config.yaml: unknown key 'stages.refine.crf.iteration' in config"),
])
def test_snakemake_dry_run_stops_before_any_job(tmp_path: Path, overlay: dict[str, Any], expected: str) -> None:
    path = tmp_path / "overlay.yaml"
    path.write_text(json.dumps(overlay))
    command = [str(SNAKEMAKE), "--snakefile", str(REPOSITORY / "Snakefile"), "--directory", str(tmp_path),
               "--configfile", str(REPOSITORY / "config.yaml"), str(path), "--cores", "1", "-n",
               "results/synth/cti/miou.json"]
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert expected in output and "Job stats" not in output and "Traceback" not in output, output
    line = next(line for line in output.splitlines() if expected in line)
    assert line.strip().startswith("config.yaml:") or "WorkflowError" not in line, output
