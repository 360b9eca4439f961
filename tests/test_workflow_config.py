"""Resolution of config.yaml into per-job configuration: presets, variants, typos, dataset checks."""

from __future__ import annotations

import pytest

from wsss_core import workflow_config as resolve
from wsss_core.errors import ConfigError, DatasetError


def make_config(tmp_path):
    return {
        "seed": 3,
        "device": "cpu",
        "num_workers": 0,
        "datasets": {
            "synth": {"format": "voc", "classes": "synth", "root": "results/synth/dataset", "splits": {},
                       "roles": {"train": "train_aug", "score": "train", "evaluate": "val"}, "generator": {"image_size": 32}},
            "voc": {"format": "voc", "classes": "voc", "root": str(tmp_path / "missing"), "splits": {},
                    "roles": {"train": "train_aug", "score": "train", "evaluate": "val"}},
        },
        "weights": {"files": {"deit_small": "w.pth"}, "use_hub": False},
        "compute": {"synth": {"gpu": 0, "mem_mb": 1000, "runtime": 5}},
        "methods": {
            "cti": {
                "pipeline": {"route": "multi_stage", "refine": "crf", "segmentation": "deeplab_v2",
                             "presets": {"voc": {"refine": "irn"}}},
                "params": {
                    "model": {"backbone": "vit_synth", "weights": None},
                    "train": {"epochs": 2, "lr": 0.1, "batch_size": 2, "crop_size": 32},
                    "losses": {"bcam": {"enabled": True}},
                    "presets": {"voc": {"model": {"backbone": "deit_small", "weights": "deit_small"},
                                        "train": {"epochs": 60}}},
                },
            }
        },
        "variants": {"cti_no_bcam": {"method": "cti", "params": {"losses": {"bcam": {"enabled": False}}}}},
        "stages": {"evaluate_seeds": {"thresholds": {"start": 0.1, "stop": 0.5, "step": 0.1},
                                      "presets": {"voc": {"thresholds": {"start": 0.3}}}}},
    }


def test_preset_is_merged_for_its_dataset_only(tmp_path):
    config = make_config(tmp_path)
    synth = resolve.method_params(config, "synth", "cti")
    voc = resolve.method_params(config, "voc", "cti")
    assert synth["model"] == {"backbone": "vit_synth", "weights": None}
    assert synth["train"] == {"epochs": 2, "lr": 0.1, "batch_size": 2, "crop_size": 32}
    assert voc["model"] == {"backbone": "deit_small", "weights": "deit_small"}
    assert voc["train"] == {"epochs": 60, "lr": 0.1, "batch_size": 2, "crop_size": 32}  # untouched keys survive
    assert voc["name"] == synth["name"] == "cti"
    assert "presets" not in voc


def test_variant_overrides_its_method(tmp_path):
    config = make_config(tmp_path)
    variant = resolve.method_params(config, "voc", "cti_no_bcam")
    assert variant["name"] == "cti"
    assert variant["losses"] == {"bcam": {"enabled": False}}
    assert variant["train"]["epochs"] == 60
    assert resolve.run_names(config) == ["cti", "cti_no_bcam"]


def test_misspelt_preset_key_names_the_key(tmp_path):
    config = make_config(tmp_path)
    config["methods"]["cti"]["params"]["presets"]["voc"]["trian"] = {"epochs": 1}
    with pytest.raises(ConfigError, match=r"methods\.cti\.params\.presets\.voc\.trian"):
        resolve.method_config(config, "voc", "cti")


def test_misspelt_variant_key_names_the_key(tmp_path):
    config = make_config(tmp_path)
    config["variants"]["cti_no_bcam"]["params"] = {"losses": {"bcma": {"enabled": False}}}
    with pytest.raises(ConfigError, match=r"variants\.cti_no_bcam\.params\.losses\.bcma"):
        resolve.method_config(config, "synth", "cti_no_bcam")


def test_unknown_method_lists_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="known: cti, cti_no_bcam"):
        resolve.method_config(make_config(tmp_path), "synth", "ctii")


def test_pipeline_choice_and_stage_presets(tmp_path):
    config = make_config(tmp_path)
    assert resolve.pipeline_choice(config, "synth", "cti")["refine"] == "crf"
    assert resolve.pipeline_choice(config, "voc", "cti")["refine"] == "irn"
    assert resolve.stage_params(config, "voc", "evaluate_seeds")["thresholds"] == {"start": 0.3, "stop": 0.5, "step": 0.1}
    with pytest.raises(ConfigError, match="stages.refine.irn"):
        resolve.stage_params(config, "voc", "refine", "irn")


def test_missing_dataset_root_names_path_key_and_synthetic_default(tmp_path):
    config = make_config(tmp_path)
    resolve.check_dataset_root(config, "synth")  # generated: nothing to check
    with pytest.raises(DatasetError) as error:
        resolve.check_dataset_root(config, "voc")
    message = str(error.value)
    assert str(tmp_path / "missing") in message
    assert "datasets.voc.root" in message
    assert "results/synth/" in message


def test_job_config_holds_only_what_the_stage_needs(tmp_path):
    config = make_config(tmp_path)
    job = resolve.job_config(config, "synth", "cti", {"split": "train"}, with_weights=False)
    # device and num_workers are run-time settings: not in the job's identity (wsss_core.runtime)
    assert set(job) == {"dataset", "stage", "seed", "method", "run"}
    assert job["dataset"]["name"] == "synth" and job["stage"] == {"split": "train"}
    assert "weights" in resolve.job_config(config, "synth", None, {})
    # key order does not change the JSON (so Snakemake's params trigger only fires on real changes)
    assert resolve.to_json({"b": 1, "a": 2}) == resolve.to_json({"a": 2, "b": 1})


def test_refine_overrides_apply_to_their_refinement_only(tmp_path):
    config = make_config(tmp_path)
    config["stages"]["refine"] = {"crf": {"iterations": 10, "bilateral_sxy": 80, "background": {"mode": "threshold"}},
                                  "irn": {"settings": {"beta": 10}, "label_crf": None}}
    config["methods"]["cti"]["pipeline"]["refine_overrides"] = {"crf": {"bilateral_sxy": 67}}
    assert resolve.refine_params(config, "synth", "cti", "crf") == {
        "iterations": 10, "bilateral_sxy": 67, "background": {"mode": "threshold"}}
    # the job of refine_crf gets the CRF's parameters under ``crf``, as before they moved up in config.yaml
    assert resolve.refine_crf_params(config, "synth", "cti") == {
        "crf": {"iterations": 10, "bilateral_sxy": 67}, "background": {"mode": "threshold"}}
    assert resolve.refine_params(config, "synth", "cti", "irn") == {"settings": {"beta": 10}, "label_crf": None}
    config["methods"]["cti"]["pipeline"]["refine_overrides"] = {"crff": {}}
    with pytest.raises(ConfigError, match="refine_overrides names \\['crff'\\]"):
        resolve.refine_params(config, "synth", "cti", "crf")
    config["methods"]["cti"]["pipeline"]["refine_overrides"] = {"crf": {"bilateral_sxyy": 1}}
    with pytest.raises(ConfigError, match="refine_overrides.crf.bilateral_sxyy"):
        resolve.refine_params(config, "synth", "cti", "crf")


def test_like_gives_a_dataset_the_presets_of_another(tmp_path):
    config = make_config(tmp_path)
    config["datasets"]["mine"] = {**config["datasets"]["voc"], "root": str(tmp_path), "like": "voc"}
    mine = resolve.method_config(config, "mine", "cti")
    assert mine == resolve.method_config(config, "voc", "cti")
    assert resolve.pipeline_choice(config, "mine", "cti")["refine"] == "irn"
    assert resolve.stage_params(config, "mine", "evaluate_seeds")["thresholds"]["start"] == 0.3
    # compute falls back to the like-dataset's entry; without `like` a dataset keeps its own presets
    config["datasets"]["mine"]["like"] = "synth"
    assert resolve.compute_resources(config, "mine") == {"gpu": 0, "mem_mb": 1000, "runtime": 5}
    del config["datasets"]["mine"]["like"]
    assert resolve.method_config(config, "mine", "cti")["model"]["backbone"] == "vit_synth"
    with pytest.raises(ConfigError, match="compute.mine"):
        resolve.compute_resources(config, "mine")


def test_seed_suffix_reseeds_every_job_of_a_run(tmp_path):
    config = make_config(tmp_path)
    assert resolve.split_run("cti_no_bcam@seed2") == ("cti_no_bcam", 2)
    assert resolve.split_run("cti") == ("cti", None)
    plain = resolve.job_config(config, "synth", "cti_no_bcam", {})
    seeded = resolve.job_config(config, "synth", "cti_no_bcam@seed2", {})
    assert plain["seed"] == 3 and seeded["seed"] == 2  # make_config's top-level seed is 3
    assert seeded["method"] == plain["method"] and seeded["method"]["losses"]["bcam"]["enabled"] is False
    assert seeded["run"] == "cti_no_bcam@seed2"
    assert resolve.pipeline_choice(config, "voc", "cti@seed1")["refine"] == "irn"
    assert resolve.seeded_run(config, "cti", 3) == "cti" and resolve.seeded_run(config, "cti", 1) == "cti@seed1"
    with pytest.raises(ConfigError, match="unknown method or variant"):
        resolve.method_config(config, "synth", "nope@seed1")


def test_a_job_carries_only_the_weight_keys_it_names(tmp_path):
    config = make_config(tmp_path)
    config["weights"]["files"].update({"vit_synth": "results/synth/pretrained/vit_synth.safetensors",
                                       "unused": "w2.pth"})
    config["methods"]["cti"]["params"]["model"]["weights"] = "vit_synth"
    job = resolve.job_config(config, "synth", "cti", {"weights": "deit_small"})
    assert job["weights"]["files"] == {"deit_small": "w.pth", "vit_synth": "results/synth/pretrained/vit_synth.safetensors"}
    assert resolve.built_weight_files(config, job) == ["results/synth/pretrained/vit_synth.safetensors"]


def test_the_pool_workers_are_no_part_of_the_pool_or_backbone_identity(tmp_path):
    """pretraining.pool.workers only says how many processes draw the images: it stays out of the pool's and
    the backbones' --config (so changing it rebuilds nothing) and reaches the stage as --workers."""
    pretraining = {"pool": {"num_classes": 100, "image_size": 64, "seed": 1, "workers": 2}}
    assert resolve.pool_identity(pretraining) == {"num_classes": 100, "image_size": 64, "seed": 1}
    assert resolve.pool_workers(pretraining) == 2 and resolve.pool_workers({}) == 1
    # the stage takes the workers from --workers (as the rule passes them) and draws the same images
    import json

    import numpy as np

    from wsss_core.stages import pretrain_pool

    tiny = {"num_classes": 2, "train_per_class": 2, "val_per_class": 1, "image_size": 32, "seed": 1}
    outputs = {}
    for workers in (1, 2):
        output = tmp_path / f"w{workers}"
        pretrain_pool.main(["--config", json.dumps({"stage": tiny}), "--workers", str(workers), "--output", str(output)])
        assert json.loads((output / "classes.json").read_text())["params"]["workers"] == workers
        outputs[workers] = np.load(output / "train.npz")
    assert all(np.array_equal(outputs[1][key], outputs[2][key]) for key in outputs[1].files)


def test_the_methods_with_own_pseudo_labels_are_those_whose_class_declares_them():
    """No list of names: a method class that sets ``pseudo_labels`` is one (``refine: own`` is allowed for it)."""
    from wsss_core.methods import METHODS, Method

    assert {"toco", "mcc", "afa", "eca"} <= set(resolve.own_pseudo_label_methods())
    assert "cti" not in resolve.own_pseudo_label_methods()

    @METHODS.register("own_labels_probe")
    class Probe(Method):  # noqa: F841 — registered for the test only
        name = "own_labels_probe"
        pseudo_labels = "par"

    try:
        assert "own_labels_probe" in resolve.own_pseudo_label_methods()
    finally:
        del METHODS._entries["own_labels_probe"]
