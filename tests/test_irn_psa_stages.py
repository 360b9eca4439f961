"""IRN / PSA relation labels, seed conversion, pseudo-masks on hand-built grids, and the three affinity stages
end to end on a tiny VOC-layout dataset."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wsss_core.io.seed_store import MaskStore, SeedStoreWriter
from wsss_core.io.seed_maps import SeedMaps
from wsss_core.refine import irn, psa
from wsss_core.refine.seed_adapter import RefinementSeeds, background_from_power, to_refinement_seeds
from wsss_core.stages import affinity_labels, refine_random_walk, train_affinity
from wsss_core.utils.seeding import sample_rng

torch.set_num_threads(1)
CLASS_NAMES = ["square", "disc"]
HEIGHT, WIDTH = 40, 48


def identity_label_crf(image, labels, num_labels):
    return labels


def identity_probability_crf(image, probabilities):
    return probabilities


# ------------------------------------------------------------------------------------ seed adapter
def test_seed_adapter_drops_background_and_max_normalises() -> None:
    maps = np.zeros((3, 2, 2), np.float32)
    maps[0] = 0.7  # background channel (key 0)
    maps[1] = [[0.1, 0.4], [0.2, 0.0]]
    maps[2] = [[1.2, 0.5], [-0.1, 0.25]]  # out of range values are clipped first
    converted = to_refinement_seeds(SeedMaps(maps=maps, keys=np.array([0, 3, 5])))
    assert converted.keys.tolist() == [3, 5]
    assert converted.label_ids.tolist() == [0, 3, 5]
    np.testing.assert_allclose(converted.maps[0], [[0.25, 1.0], [0.5, 0.0]], rtol=1e-5)
    np.testing.assert_allclose(converted.maps[1], [[1.0, 0.5], [0.0, 0.25]], rtol=1e-5)


def test_seed_adapter_stride_maps() -> None:
    seeds = RefinementSeeds(maps=np.full((1, 9, 13), 0.5, np.float32), keys=np.array([1]))
    small = seeds.downsampled(4)
    assert small.shape == (1, 3, 4)  # ((9 − 1) // 4 + 1, (13 − 1) // 4 + 1)
    np.testing.assert_allclose(small, np.ones((1, 3, 4)), rtol=1e-5)  # re-normalised by the max


def test_seed_adapter_keeps_the_background_channel_when_asked() -> None:
    maps = np.zeros((2, 1, 3), np.float32)
    maps[0] = [[0.2, 0.4, 0.1]]  # background (key 0): max-normalised like the others
    maps[1] = [[0.5, 0.25, 0.0]]
    seeds = SeedMaps(maps=maps, keys=np.array([0, 4]))
    assert to_refinement_seeds(seeds).background is None  # dropped by default, as for every refiner
    kept = to_refinement_seeds(seeds, keep_background=True)
    assert kept.keys.tolist() == [4] and kept.label_ids.tolist() == [0, 4]
    np.testing.assert_allclose(kept.background, [[0.5, 1.0, 0.25]], rtol=1e-5)
    np.testing.assert_allclose(kept.with_background(), [[[0.5, 1.0, 0.25]], [[1.0, 0.5, 0.0]]], rtol=1e-5)
    with pytest.raises(ValueError, match="no background channel"):
        to_refinement_seeds(SeedMaps(maps=maps[1:], keys=np.array([4])), keep_background=True)
    with pytest.raises(ValueError, match="without their background"):
        to_refinement_seeds(seeds).with_background()


def test_stride_maps_with_the_background_are_not_renormalised() -> None:
    # SIPE resizes IS-CAM to the edge map's size and walks it as is; IRN's stride maps are re-normalised
    seeds = RefinementSeeds(maps=np.full((1, 9, 13), 0.5, np.float32), keys=np.array([1]),
                            background=np.full((9, 13), 0.25, np.float32))
    small = seeds.with_background(4)
    assert small.shape == (2, 3, 4)
    np.testing.assert_allclose(small[0], 0.25, rtol=1e-5)
    np.testing.assert_allclose(small[1], 0.5, rtol=1e-5)


def test_power_background() -> None:
    maps = np.array([[[0.5, 0.0]], [[0.2, 0.9]]], np.float32)
    np.testing.assert_allclose(background_from_power(maps, 2), [[0.25, 0.01]], rtol=1e-5)


# --------------------------------------------------------------------------------- relation labels
def test_irn_relation_labels_with_two_thresholds() -> None:
    seeds = RefinementSeeds(maps=np.array([[[0.9, 0.2, 0.01]]], np.float32), keys=np.array([2]))
    image = np.zeros((1, 3, 3), np.uint8)
    labels = irn.relation_labels(image, seeds, fg_threshold=0.3, bg_threshold=0.05, crf=identity_label_crf)
    # 0.9 > 0.30: class 2; 0.2: background at 0.30 but foreground at 0.05: unsure; 0.01: background
    assert labels.tolist() == [[2, 255, 0]]
    assert labels.dtype == np.uint8


def test_irn_relation_labels_use_the_crf_output() -> None:
    seeds = RefinementSeeds(maps=np.array([[[0.9, 0.9]], [[0.0, 0.95]]], np.float32), keys=np.array([1, 4]))
    calls = []

    def everything_second(image, labels, num_labels):
        calls.append((labels.tolist(), num_labels))
        return np.full_like(labels, 2)

    labels = irn.relation_labels(np.zeros((1, 2, 3), np.uint8), seeds, 0.3, 0.05, everything_second)
    assert calls[0] == ([[1, 2]], 3)  # argmax over [0.3; maps]
    assert labels.tolist() == [[4, 4]]  # CRF label 2 → label id keys[1] = 4


def test_sipe_relation_labels_use_the_seeds_background_and_half_of_it() -> None:
    # pixel 0: fg 0.9 > bg 0.6 → class 2; pixel 1: bg 0.6 > fg 0.4, but half of it (0.3) < 0.4 → unsure;
    # pixel 2: bg 0.9 > fg 0.2 and 0.45 > 0.2 → background. IRN's thresholds (0.3 / 0.05) give [2, 2, 255].
    seeds = RefinementSeeds(maps=np.array([[[0.9, 0.4, 0.2]]], np.float32), keys=np.array([2]),
                            background=np.array([[0.6, 0.6, 0.9]], np.float32))
    labels = irn.seed_background_relation_labels(np.zeros((1, 3, 3), np.uint8), seeds, 0.5, identity_label_crf)
    assert labels.tolist() == [[2, 255, 0]]
    thresholds = irn.relation_labels(np.zeros((1, 3, 3), np.uint8), seeds, 0.3, 0.05, identity_label_crf)
    assert thresholds.tolist() == [[2, 2, 255]]
    # the refiner reads it under SIPE's preset, and only there
    refiner = irn.IRNRefiner()
    assert refiner.uses_seed_background(irn.IRNSettings.load({"preset": "sipe"}))
    assert not refiner.uses_seed_background(irn.IRNSettings.load({"preset": "rib"}))
    assert not psa.PSARefiner().uses_seed_background(psa.PSASettings())


def test_psa_relation_labels_with_two_alphas() -> None:
    seeds = RefinementSeeds(maps=np.array([[[0.9, 0.4, 0.1]]], np.float32), keys=np.array([2]))
    labels = psa.relation_labels(np.zeros((1, 3, 3), np.uint8), seeds, 1, 4, identity_probability_crf)
    # m = 0.9: bg (1 − m) = 0.1 < 0.9 → class 2; m = 0.4: bg 0.6 at α 1 (unsure), 0.6⁴ = 0.13 at α 4
    # (still foreground) → 255; m = 0.1: bg 0.9 at α 1, 0.9⁴ = 0.66 > 0.1 at α 4 → background
    assert labels.tolist() == [[2, 255, 0]]


def test_no_foreground_class_is_all_background() -> None:
    seeds = RefinementSeeds(maps=np.zeros((0, 2, 3), np.float32), keys=np.zeros(0, np.int64))
    assert irn.relation_labels(np.zeros((2, 3, 3), np.uint8), seeds, 0.3, 0.05, identity_label_crf).tolist() == [[0] * 3] * 2
    assert psa.relation_labels(np.zeros((2, 3, 3), np.uint8), seeds, 4, 32, identity_probability_crf).max() == 0


# ---------------------------------------------------------------------------------- pseudo-masks
def test_irn_semantic_mask_thresholds_the_walked_scores() -> None:
    settings = irn.IRNSettings(sem_seg_bg_threshold=0.27, cam_power=1.0, exp_times=2)
    boundary = torch.zeros(4, 5)
    everywhere = RefinementSeeds(maps=np.full((1, 13, 17), 0.8, np.float32), keys=np.array([3]))
    assert (irn.semantic_mask(boundary, everywhere, settings, (13, 17)) == 3).all()  # 0.8 / max = 1 > 0.27
    nowhere = RefinementSeeds(maps=np.zeros((1, 13, 17), np.float32), keys=np.array([3]))
    assert (irn.semantic_mask(boundary, nowhere, settings, (13, 17)) == 0).all()


def test_sipe_semantic_mask_takes_the_argmax_with_the_walked_background() -> None:
    # constant maps stay constant under the walk: a background of 0.9 beats a class map of 0.8 everywhere,
    # where IRN's rule (the class map divided by the global max, 1 > t_sem 0.27) gives the class everywhere
    seeds = RefinementSeeds(maps=np.full((1, 13, 17), 0.8, np.float32), keys=np.array([3]),
                            background=np.full((13, 17), 0.9, np.float32))
    boundary = torch.zeros(4, 5)
    sipe = irn.IRNSettings.load({"preset": "sipe", "exp_times": 2})
    assert (irn.semantic_mask(boundary, seeds, sipe, (13, 17)) == 0).all()
    rib = irn.IRNSettings.load({"preset": "rib", "exp_times": 2})
    assert (irn.semantic_mask(boundary, seeds, rib, (13, 17)) == 3).all()
    lower = RefinementSeeds(maps=seeds.maps, keys=seeds.keys, background=np.full((13, 17), 0.7, np.float32))
    assert (irn.semantic_mask(boundary, lower, sipe, (13, 17)) == 3).all()


def test_psa_semantic_mask_without_pairs_is_the_upsampled_seed() -> None:
    # no affinity between pixels (T = identity): argmax of the 8×8-pooled scores, bilinearly upsampled.
    # class 1 on columns 0..7: pooled cells 1 (left) and 0 (right) against a constant background 0.39;
    # bilinear value at column x is 1 − clamp((x + 0.5) / 8 − 0.5, 0, 1): 0.4375 at x = 8, 0.3125 at x = 9
    settings = psa.PSASettings(background="constant", background_constant=0.39, logt=3)
    maps = np.zeros((1, 16, 16), np.float32)
    maps[0, :, :8] = 1.0
    affinity = torch.zeros(len(psa.PathIndex(settings.radius)), 2, 2)
    mask = psa.semantic_mask(affinity, RefinementSeeds(maps=maps, keys=np.array([2])), settings)
    assert (mask[:, :9] == 2).all() and (mask[:, 9:] == 0).all()


# ------------------------------------------------------------------------------------ the stages
def make_dataset(root: Path, count: int = 6) -> dict:
    """A VOC-layout folder: a red square or a green disc on grey, palette PNG masks."""
    rng = np.random.default_rng(0)
    for folder in ("JPEGImages", "SegmentationClassAug", "Annotations", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    ids = [f"img_{index:03d}" for index in range(count)]
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    for index, image_id in enumerate(ids):
        label = 1 + index % 2
        top, left = rng.integers(4, 16), rng.integers(4, 20)
        if label == 1:
            inside = (yy >= top) & (yy < top + 18) & (xx >= left) & (xx < left + 18)
        else:
            inside = (yy - top - 9) ** 2 + (xx - left - 9) ** 2 < 81
        image = np.full((HEIGHT, WIDTH, 3), 110, np.uint8)
        image[inside] = (220, 30, 30) if label == 1 else (30, 200, 40)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        png = Image.fromarray(np.where(inside, label, 0).astype(np.uint8), mode="P")
        png.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9))
        png.save(root / "SegmentationClassAug" / f"{image_id}.png")
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><object><name>{CLASS_NAMES[label - 1]}</name></object></annotation>"
        )
    (root / "ImageSets/Segmentation/train_aug.txt").write_text("\n".join(ids) + "\n")
    return {
        "name": "tiny", "format": "voc", "root": str(root), "class_names": CLASS_NAMES,
        "splits": {"train_aug": "ImageSets/Segmentation/train_aug.txt"}, "cls_labels": None,
    }


def write_seeds(dataset: dict, path: Path, with_background: bool = False) -> None:
    """Blurred ground truth stands in for a method's CAMs: min-max normalised, no background channel (an
    MCTformer-like store); or ``with_background``: max-normalised, with 1 − it as the background channel (key
    0; a SWTformer-V2-like store)."""
    import cv2

    import wsss_core.data

    reader = wsss_core.data.open_dataset(dataset)
    method, normalization = ("swtformer", "max") if with_background else ("mctformer", "minmax")
    with SeedStoreWriter(path, method=method, num_classes=2, normalization=normalization) as writer:
        for image_id in reader.ids("train_aug"):
            truth = reader.mask(image_id)
            label = int(truth.max())
            cam = cv2.GaussianBlur((truth == label).astype(np.float32), (9, 9), 3)
            if with_background:
                cam = cam / cam.max()
                writer.add(image_id, np.stack([1.0 - cam, cam]), np.array([0, label]))
            else:
                cam = (cam - cam.min()) / (cam.max() - cam.min())
                writer.add(image_id, cam[None], np.array([label]))


class FakeSegmentationTrainingDataset(torch.utils.data.Dataset):
    """Stand-in with the contract of wsss_core.data.datasets.SegmentationTrainingDataset."""

    def __init__(self, reader, split, mask_source, sample_fn, seed) -> None:
        self.reader, self.ids, self.mask_source = reader, reader.ids(split), mask_source
        self.sample_fn, self.seed = sample_fn, seed

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, key):
        epoch, index = key
        image_id = self.ids[index]
        sample = self.sample_fn(self.reader.image(image_id), self.mask_source(image_id),
                                sample_rng(self.seed, epoch, index))
        return {**sample, "image_id": image_id, "index": index}


@pytest.fixture(autouse=True)
def training_dataset(monkeypatch):
    """Use the real SegmentationTrainingDataset when it exists, else the stand-in."""
    try:
        import wsss_core.data.datasets  # noqa: F401
    except ImportError:
        module = types.ModuleType("wsss_core.data.datasets")
        module.SegmentationTrainingDataset = FakeSegmentationTrainingDataset
        monkeypatch.setitem(sys.modules, "wsss_core.data.datasets", module)


STAGE_BLOCKS = {
    "irn": {
        "irn": {"conf_fg_threshold": 0.30, "conf_bg_threshold": 0.05, "sem_seg_bg_threshold": 0.25,
                "cam_power": 1.0, "train_radius": 5, "exp_times": 3, "backbone": "resnet_synth",
                "backbone_args": {"channels": [8, 16, 32, 64], "stem_width": 8}, "weights": None,
                "freeze_backbone": False, "source_region": "in_bounds"},
        "scale_range": [0.9, 1.1],
    },
    "psa": {
        "psa": {"low_alpha": 1, "high_alpha": 12, "logt": 3, "background": "constant", "width": 0.0625,
                "weights": None, "source_region": "in_bounds"},
        "long_side_range": [40, 56], "color_jitter": [0.3, 0.3, 0.3, 0.1],
    },
}


def stage_config(dataset: dict, refine: str) -> dict:
    stage = {"refine": refine, "split": "train_aug", "batch_size": 2, "iterations": 2, "lr": 0.01,
             "weight_decay": 1e-4, "momentum": 0.0, "crop_size": 32, "log_every": 1, "device": "cpu",
             "num_workers": 0, **STAGE_BLOCKS[refine]}
    return {"dataset": dataset, "method": {"name": "mctformer"}, "stage": stage,
            "weights": {"files": {}, "use_hub": False}, "seed": 0, "device": "cpu", "num_workers": 0}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("affinity")
    dataset = make_dataset(root / "dataset")
    write_seeds(dataset, root / "seeds.h5")
    return {"root": root, "dataset": dataset, "seeds": root / "seeds.h5"}


@pytest.mark.parametrize("refine", ["irn", "psa"])
def test_three_stages_end_to_end(workspace, refine, monkeypatch) -> None:
    root = workspace["root"] / refine
    config = stage_config(workspace["dataset"], refine)
    labels_path, model_path, masks_path = root / "labels.h5", root / "model.pt", root / "train_aug.h5"
    affinity_labels.main(["--config", json.dumps(config), "--seeds", str(workspace["seeds"]),
                          "--output", str(labels_path)])
    labels = MaskStore(labels_path)
    assert labels.attrs["refine"] == refine and labels.attrs["seed_normalization"] == "minmax"
    import wsss_core.data

    reader = wsss_core.data.open_dataset(workspace["dataset"])
    for image_id in reader.ids("train_aug"):
        relation, truth = labels.get(image_id), reader.mask(image_id)
        assert set(np.unique(relation)) <= {0, int(truth.max()), 255}
        # the blurred seed's core is confident foreground, the far corner confident background
        assert (relation[truth > 0] == truth.max()).mean() > 0.3
        assert relation[0, 0] == 0

    with monkeypatch.context() as patch:
        saved = []
        original = train_affinity.save_torch
        patch.setattr(train_affinity, "save_torch", lambda payload, path: (saved.append(payload), original(payload, path)))
        train_affinity.main(["--config", json.dumps(config), "--labels", str(labels_path), "--output", str(model_path)])
    history = saved[0]["history"]
    assert len(history) == 2 and all(np.isfinite(record["loss"]) for record in history)
    assert saved[0]["refine"] == refine and not (root / "_state").exists()

    refine_random_walk.main(["--config", json.dumps(config), "--seeds", str(workspace["seeds"]),
                             "--model", str(model_path), "--output", str(masks_path)])
    masks = MaskStore(masks_path)
    assert masks.ids() == reader.ids("train_aug")
    for image_id in masks.ids():
        mask = masks.get(image_id)
        assert mask.shape == (HEIGHT, WIDTH)
        assert set(np.unique(mask)) <= {0, int(reader.mask(image_id).max())}


def test_irn_with_the_seeds_background_end_to_end(workspace, tmp_path, capsys) -> None:
    """SIPE's reading through the two stages that read seeds; a store without background is refused before
    anything is written."""
    config = stage_config(workspace["dataset"], "irn")
    config["method"] = {"name": "swtformer"}
    config["stage"]["irn"] = {**config["stage"]["irn"], "background": "seeds", "cam_power": 1.5}
    seeds = tmp_path / "seeds_bg.h5"
    write_seeds(workspace["dataset"], seeds, with_background=True)
    labels_path, model_path, masks_path = tmp_path / "labels.h5", tmp_path / "model.pt", tmp_path / "masks.h5"
    affinity_labels.main(["--config", json.dumps(config), "--seeds", str(seeds), "--output", str(labels_path)])
    import wsss_core.data

    reader = wsss_core.data.open_dataset(workspace["dataset"])
    labels = MaskStore(labels_path)
    assert labels.attrs["settings"]["background"] == "seeds"
    for image_id in reader.ids("train_aug"):
        relation, truth = labels.get(image_id), reader.mask(image_id)
        assert set(np.unique(relation)) <= {0, int(truth.max()), 255}
        assert (relation[truth > 0] == truth.max()).mean() > 0.3 and relation[0, 0] == 0
    train_affinity.main(["--config", json.dumps(config), "--labels", str(labels_path), "--output", str(model_path)])
    refine_random_walk.main(["--config", json.dumps(config), "--seeds", str(seeds), "--model", str(model_path),
                             "--output", str(masks_path)])
    masks = MaskStore(masks_path)
    for image_id in masks.ids():
        truth = reader.mask(image_id)
        assert set(np.unique(masks.get(image_id))) <= {0, int(truth.max())}

    capsys.readouterr()
    no_background = dict(config, method={"name": "mctformer"})
    for main, extra in ((affinity_labels.main, []), (refine_random_walk.main, ["--model", str(model_path)])):
        output = tmp_path / "refused.h5"
        with pytest.raises(SystemExit):
            main(["--config", json.dumps(no_background), "--seeds", str(workspace["seeds"]), *extra,
                  "--output", str(output)])
        assert "stages.refine.irn.settings.background = 'seeds'" in capsys.readouterr().err
        assert not output.exists()


def test_model_of_the_other_refiner_is_refused(workspace, capsys) -> None:
    config = stage_config(workspace["dataset"], "psa")
    model = workspace["root"] / "fake.pt"
    torch.save({"refine": "irn", "num_classes": 2, "model": {}}, model)
    with pytest.raises(SystemExit):
        refine_random_walk.main(["--config", json.dumps(config), "--seeds", str(workspace["seeds"]),
                                 "--model", str(model), "--output", str(workspace["root"] / "out.h5")])
    assert not (workspace["root"] / "out.h5").exists()


def test_unknown_refiner_and_settings_keys_are_config_errors(workspace) -> None:
    from wsss_core.errors import ConfigError

    with pytest.raises(ConfigError, match="stage.refine"):
        affinity_labels.refiner_from_stage({"refine": "crf"})
    with pytest.raises(ConfigError, match="unknown key 'stage.irn.beta_typo'"):
        irn.IRNSettings.load({"beta_typo": 3}, "stage.irn")
    with pytest.raises(ConfigError, match="stage.irn.beta = 'ten'"):
        irn.IRNSettings.load({"beta": "ten"}, "stage.irn")
    with pytest.raises(ConfigError, match="stage.psa.background = 'median': must be 'power' or 'constant'"):
        psa.PSASettings.load({"background": "median"}, "stage.psa")
    with pytest.raises(ConfigError, match="low_alpha \\(12\\) must be below high_alpha \\(4\\)"):
        psa.PSASettings.load({"low_alpha": 12, "high_alpha": 4}, "stage.psa")


def test_affinity_sample_crops_and_reduces_labels() -> None:
    from wsss_core.segmentation import NORMALIZATIONS

    sample = train_affinity.AffinitySample(crop_size=16, stride=4, normalization=NORMALIZATIONS["imagenet"], flip=False)
    labels = np.arange(8 * 10, dtype=np.uint8).reshape(8, 10)
    out = sample(np.zeros((8, 10, 3), np.uint8), labels, np.random.default_rng(0))
    assert out["image"].shape == (3, 16, 16) and out["labels"].shape == (4, 4)
    # the 8×10 image is padded to 16×16 (one crop position): pixel centres 2, 6 of rows and columns
    assert out["labels"].tolist() == [[22, 26, 255, 255], [62, 66, 255, 255], [255] * 4, [255] * 4]


def test_threshold_and_alpha_presets() -> None:
    rib = irn.IRNSettings.load({"preset": "rib", "sem_seg_bg_threshold": 0.3})
    assert (rib.conf_fg_threshold, rib.conf_bg_threshold, rib.cam_power) == (0.35, 0.17, 1.3)
    assert rib.sem_seg_bg_threshold == 0.3  # an explicit key wins over the preset
    original = irn.IRNSettings.load({"preset": "irn"})
    assert (original.conf_fg_threshold, original.conf_bg_threshold, original.sem_seg_bg_threshold) == (0.30, 0.05, 0.25)
    assert irn.IRNSettings.load({"preset": "rib_coco"}).sem_seg_bg_threshold == 0.22
    sipe = irn.IRNSettings.load({"preset": "sipe"})
    assert (sipe.background, sipe.background_factor, sipe.cam_power) == ("seeds", 0.5, 1.5)
    assert irn.IRNSettings().background == "threshold"
    mctformer = psa.PSASettings.load({"preset": "mctformer"})
    assert (mctformer.low_alpha, mctformer.high_alpha, mctformer.background, mctformer.logt) == (1, 12, "constant", 6)
    from wsss_core.errors import ConfigError

    with pytest.raises(ConfigError, match="stage.psa.preset = 'seam'"):
        psa.PSASettings.load({"preset": "seam"}, "stage.psa")
    # an int stays an int (``beta: 10`` reaches pow as before); the defaults are the type's
    assert type(irn.IRNSettings.load({"beta": 10}).beta) is int and irn.IRNSettings().exp_times == 8


def test_color_jitter_of_zero_strength_is_the_identity_and_brightness_scales() -> None:
    image = np.random.default_rng(0).integers(0, 200, (5, 6, 3), dtype=np.uint8)
    same = train_affinity.color_jitter(image, [0, 0, 0, 0], np.random.default_rng(1))
    assert np.abs(same.astype(int) - image).max() <= 1  # float round trip only
    factor = np.random.default_rng(2).uniform(0.5, 1.5)  # the first draw is the brightness factor
    brighter = train_affinity.color_jitter(image, [0.5, 0, 0, 0], np.random.default_rng(2))
    expected = np.clip(image * factor, 0, 255)
    assert np.abs(brighter.astype(float) - expected).max() <= 1.0
