"""Run-time settings (how a job runs) are split from a job's identity (what it computes): the rules'
--config JSON, the resume key and the provenance hash leave them out; they reach the stages as
--runtime (wsss_core.runtime). The end-to-end check (no rerun, a resume across a new log_every) is in
tests/test_workflow_e2e.py."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from wsss_core import runtime
from wsss_core import workflow_config as resolve
from wsss_core.errors import ConfigError
from wsss_core.stages import _cli
from wsss_core.utils.provenance import provenance

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shipped() -> dict:
    return yaml.safe_load((REPOSITORY / "config.yaml").read_text())


def _job(config: dict, *stage_path: str, run: str | None = "cti") -> str:
    """The --config JSON jobs.smk's _job gives a job reading stages.<stage_path>."""
    params = resolve.stage_params(config, "synth", *stage_path)
    params["split"] = "train_aug"
    section = ".".join(stage_path)
    return resolve.to_json(resolve.job_config(config, "synth", run, params, with_weights=False, section=section))


def test_the_shipped_config_passes_and_every_run_time_key_is_in_the_runtime_json(shipped) -> None:
    runtime.check(shipped)
    values = runtime.workflow_runtime(shipped)
    assert values["num_workers"] == shipped["num_workers"] and values["device"] == shipped["device"]
    assert set(values["sections"]["train_method"]) == {
        "log_every", "checkpoint_every", "pin_memory", "prefetch_factor", "image_cache"}
    for path in ("refine.irn.train", "refine.psa.train", "segmentation.deeplab_v2.train",
                 "segmentation.deeplab_v1_resnet38.train"):
        assert set(values["sections"][path]) == {"log_every", "checkpoint_every"}, path
    assert "export_seeds" not in values["sections"]  # precision changes the arithmetic: identity


@pytest.mark.parametrize("stage_path", [("train_method",), ("segmentation", "deeplab_v2", "train"),
                                        ("refine", "irn", "train")])
def test_a_jobs_identity_leaves_the_run_time_keys_out(shipped, stage_path) -> None:
    job = json.loads(_job(shipped, *stage_path))
    assert "num_workers" not in job and "device" not in job
    assert not {"log_every", "checkpoint_every", "prefetch_factor", "pin_memory", "image_cache"} & set(job["stage"])
    assert job["stage"]["split"] == "train_aug"
    if stage_path == ("train_method",):
        assert job["stage"] == {"split": "train_aug", "precision": "fp32", "channels_last": False}
    else:
        assert "batch_size" in job["stage"]  # the result settings stay


def test_changing_run_time_settings_leaves_every_identity_unchanged(shipped) -> None:
    paths = [("train_method",), ("export_seeds",), ("evaluate_seeds",), ("segmentation", "deeplab_v2", "train"),
             ("segmentation", "deeplab_v2", "inference"), ("refine", "psa", "train")]
    before = [_job(shipped, *path) for path in paths]
    changed = copy.deepcopy(shipped)
    changed.update(num_workers=7, device="cpu")
    changed["stages"]["train_method"].update(log_every=3, prefetch_factor=2, pin_memory=False, image_cache=True,
                                             checkpoint_every=50)
    changed["stages"]["segmentation"]["deeplab_v2"]["train"].update(log_every=1, checkpoint_every=7)
    changed["stages"]["refine"]["psa"]["train"]["log_every"] = 5
    runtime.check(changed)
    assert [_job(changed, *path) for path in paths] == before
    assert runtime.workflow_runtime(changed) != runtime.workflow_runtime(shipped)
    # a result setting does change the identity
    changed["stages"]["train_method"]["precision"] = "bf16"
    assert _job(changed, "train_method") != before[0]


def _set(path: str, value):
    def apply(config: dict) -> None:
        *parents, key = path.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        node[key] = value
    return apply


BAD = [
    ("num_workers -1", _set("num_workers", -1), "num_workers is -1; a run-time setting that must be an integer >= 0"),
    ("device tpu", _set("device", "tpu"), "device is 'tpu'; a run-time setting that must be auto, cpu, cuda or cuda:N"),
    ("log_every 0", _set("stages.train_method.log_every", 0),
     "stages.train_method.log_every is 0; a run-time setting that must be an integer >= 1"),
    ("prefetch_factor 0", _set("stages.train_method.prefetch_factor", 0),
     "stages.train_method.prefetch_factor is 0; a run-time setting that must be an integer >= 1 or null"),
    ("pin_memory yes", _set("stages.train_method.pin_memory", "yes"),
     "stages.train_method.pin_memory is 'yes'; a run-time setting that must be true, false or null"),
    ("segmentation log_every float", _set("stages.segmentation.deeplab_v2.train.log_every", 2.5),
     "stages.segmentation.deeplab_v2.train.log_every is 2.5; a run-time setting that must be an integer >= 1"),
    ("refine checkpoint_every -1", _set("stages.refine.irn.train.checkpoint_every", -1),
     "stages.refine.irn.train.checkpoint_every is -1; a run-time setting that must be an integer >= 0"),
    ("typo in train_method", _set("stages.train_method.log_evry", 5),
     "unknown key 'stages.train_method.log_evry' in config (known keys there: channels_last, checkpoint_every, "
     "image_cache, log_every, pin_memory, precision, prefetch_factor)"),
    ("preset sets a run-time key", _set("stages.segmentation.deeplab_v2.train.presets.synth.log_every", 25),
     "stages.segmentation.deeplab_v2.train.presets.synth.log_every: 'log_every' is a run-time setting"),
    ("preset higher up sets one", _set("stages.refine.presets", {"voc": {"irn": {"train": {"checkpoint_every": 9}}}}),
     "stages.refine.presets.voc.irn.train.checkpoint_every: 'checkpoint_every' is a run-time setting"),
    ("method's refine override sets one", _set("methods.cam.pipeline.presets.synth.refine_overrides",
                                                {"irn": {"train": {"log_every": 1}}}),
     "methods.cam.pipeline.presets.synth.refine_overrides.irn.train.log_every: 'log_every' is a run-time setting"),
]


@pytest.mark.parametrize("breaks, expect", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_a_bad_run_time_value_stops_with_one_line_naming_the_key(shipped, breaks, expect) -> None:
    config = copy.deepcopy(shipped)
    breaks(config)
    with pytest.raises(ConfigError) as error:
        runtime.check(config)
    message = str(error.value)
    assert expect in message and "\n" not in message, message


def test_values_given_as_text_on_the_command_line_are_read_as_yaml_would(shipped) -> None:
    """Snakemake's ``--config stages="{train_method: {log_every: 3}}"`` gives nested values as strings."""
    config = copy.deepcopy(shipped)
    config["stages"]["train_method"].update(log_every="3", pin_memory="false", image_cache="null")
    runtime.check(config)
    assert runtime.workflow_runtime(config)["sections"]["train_method"] == {
        "log_every": 3, "checkpoint_every": 0, "pin_memory": False, "prefetch_factor": 4, "image_cache": None}
    config["stages"]["train_method"]["log_every"] = "0"
    with pytest.raises(ConfigError, match="stages.train_method.log_every is 0; a run-time setting that must be an "
                                          "integer >= 1"):
        runtime.check(config)


def test_a_preset_of_a_result_setting_is_still_allowed(shipped) -> None:
    config = copy.deepcopy(shipped)
    config["stages"]["train_method"]["presets"] = {"voc": {"precision": "bf16"}}
    runtime.check(config)


def test_a_stage_gets_its_sections_values_through_the_cli(shipped) -> None:
    values = runtime.workflow_runtime(shipped)
    job = _job(shipped, "segmentation", "deeplab_v2", "train")
    parser = _cli.stage_parser("test")
    args = parser.parse_args(["--config", job, "--runtime", resolve.to_json(values),
                              "--runtime-section", "segmentation.deeplab_v2.train"])
    assert args.config["runtime"] == {"num_workers": shipped["num_workers"], "device": shipped["device"],
                                      "log_every": 20, "checkpoint_every": 500}
    assert runtime.identity(args.config, "segmentation.*.train") == json.loads(job)
    settings = runtime.settings(args.config, "segmentation.*.train")
    assert settings["log_every"] == 20 and settings["num_workers"] == shipped["num_workers"]
    # without a section: the top-level values only
    args = parser.parse_args(["--config", job, "--runtime", resolve.to_json(values)])
    assert args.config["runtime"] == {"num_workers": shipped["num_workers"], "device": shipped["device"]}
    with pytest.raises(SystemExit):
        parser.parse_args(["--config", job, "--runtime", "{}", "--runtime-section", "segmentaton.x.train"])


def test_a_pretraining_recipes_log_every_is_a_run_time_setting(shipped) -> None:
    """``pretraining.backbones.<name>.log_every`` (a section outside ``stages``) stays out of the backbone
    job's --config and reaches the stage through --runtime-section; a bad value stops like the others."""
    before = resolve.to_json(resolve.pretrain_backbone_job(shipped, "vit_synth"))
    changed = copy.deepcopy(shipped)
    changed["pretraining"]["backbones"]["vit_synth"]["log_every"] = 3
    runtime.check(changed)
    job = resolve.to_json(resolve.pretrain_backbone_job(changed, "vit_synth"))
    assert job == before and "log_every" not in json.loads(job)["stage"]
    values = runtime.workflow_runtime(changed)
    assert values["sections"]["pretraining.backbones.vit_synth"] == {"log_every": 3}
    args = _cli.stage_parser("test").parse_args(["--config", job, "--runtime", resolve.to_json(values),
                                                 "--runtime-section", "pretraining.backbones.vit_synth"])
    assert runtime.settings(args.config, runtime.PRETRAINING_BACKBONE)["log_every"] == 3
    assert runtime.identity(args.config, runtime.PRETRAINING_BACKBONE) == json.loads(before)
    changed["pretraining"]["backbones"]["vit_synth"]["log_every"] = "often"
    with pytest.raises(ConfigError, match="pretraining.backbones.vit_synth.log_every is 'often'; a run-time setting"):
        runtime.check(changed)
    # a result setting of the recipe does change the identity
    changed["pretraining"]["backbones"]["vit_synth"].update(log_every=3, epochs=9)
    assert resolve.to_json(resolve.pretrain_backbone_job(changed, "vit_synth")) != before


def test_direct_callers_keep_their_keys_where_they_were(shipped) -> None:
    """A test or a benchmark calling a stage function with num_workers/device at the top level and
    log_every in ``stage`` gets them as run-time values, and they stay out of the hashes."""
    legacy = {"dataset": {"name": "synth"}, "seed": 0, "device": "cpu", "num_workers": 0, "threads": 1,
              "stage": {"split": "train_aug", "log_every": 1, "checkpoint_every": 2, "precision": "fp32"}}
    assert runtime.settings(legacy, "train_method") == {"device": "cpu", "num_workers": 0, "threads": 1,
                                                        "log_every": 1, "checkpoint_every": 2}
    same = {**legacy, "num_workers": 4, "stage": {**legacy["stage"], "log_every": 7},
            "runtime": {"device": "cuda"}}
    assert runtime.identity(legacy, "train_method") == runtime.identity(same, "train_method") == {
        "dataset": {"name": "synth"}, "seed": 0, "stage": {"split": "train_aug", "precision": "fp32"}}
    assert runtime.settings(same, "train_method")["device"] == "cuda"  # --runtime wins
    stage = "wsss_core.stages.export_seeds"
    assert provenance(legacy, stage)["config_hash"] == provenance({**legacy, "num_workers": 3}, stage)["config_hash"]
    assert "num_workers" not in provenance(legacy, stage)["config"]
