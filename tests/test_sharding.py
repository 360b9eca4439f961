"""Sharded stages: N shard stores merged equal the store one unsharded run writes, image by image, bit for bit.

Compared: the set of image ids, and per image the stored array's bytes, dtype, shape, chunking,
compression and attributes (keys, orig_size), plus every file attribute except the throughput
(``images_per_second``, ``seconds``) and ``shards``. The seeds come from export_seeds run on a tiny
VOC-layout dataset with a random-init vit_synth MCTformer (unsharded, and as 3 shards of 7 images); an
export whose images are decoded ahead by a DataLoader worker stores the same arrays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from wsss_core.errors import ConfigError, StoreError
from wsss_core.io.seed_store import MaskStoreWriter, SeedStore
from wsss_core.methods.base import method_from_config
from wsss_core.stages import export_seeds, merge_stores
from wsss_core.stages.export_seeds import RandomInitCatalog
from wsss_core.stages.merge_stores import shard_ids

IDS = [f"img_{index}" for index in range(7)]
RUN_ATTRS = {"images_per_second", "seconds", "shards", "merge_provenance"}


def _write_dataset(root: Path) -> dict[str, Any]:
    """Seven 30×34 images with a red and/or blue square (one with neither); PSA-style cls_labels.npy."""
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = {}
    for index, image_id in enumerate(IDS):
        image = rng.integers(80, 120, (30, 34, 3), dtype=np.uint8)
        present = np.array([index % 2 == 0, index % 3 == 1], dtype=np.float32)
        if index == 6:
            present[:] = 0
        if present[0]:
            image[3:13, 3:13] = (220, 20, 20)
        if present[1]:
            image[15:27, 17:31] = (20, 20, 220)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        labels[image_id] = present
    np.save(root / "cls_labels.npy", labels, allow_pickle=True)
    (root / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("\n".join(IDS) + "\n")
    return {"name": "tiny", "format": "voc", "root": str(root), "class_names": ["red", "blue"],
            "splits": {"train_aug": "ImageSets/Segmentation/train_aug.txt"}, "cls_labels": "cls_labels.npy"}


def _config(dataset: dict[str, Any]) -> dict[str, Any]:
    method = {
        "name": "mctformer",
        "model": {"backbone": "vit_synth", "weights": None, "drop_path": 0.0, "image_size": 32},
        "train": {"batch_size": 2, "epochs": 1, "lr": 5e-4, "weight_decay": 0.05, "warmup_epochs": 0, "min_lr": 1e-5,
                  "crop_size": 32},
        "seeds": {"class_attention_blocks": [-1], "patch_attention_blocks": "all", "scales": [1.0], "flip": True},
    }
    return {"dataset": dataset, "method": method, "stage": {"split": "train_aug"},
            "weights": {"files": {}, "use_hub": False}, "seed": 0, "device": "cpu", "num_workers": 0, "threads": 1}


def _save_random_model(config: dict[str, Any], path: Path) -> None:
    torch.manual_seed(0)
    method = method_from_config(config, 2)
    model = method.build_model(RandomInitCatalog())
    torch.save({"method": method.name, "num_classes": 2, "model": model.state_dict()}, path)


def store_contents(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(file attributes without the per-run ones, {image id: everything stored about it})."""
    with h5py.File(path, "r", locking=False) as handle:
        attrs = {name: value for name, value in handle.attrs.items() if name not in RUN_ATTRS}
        attrs["json_attrs"] = sorted(set(json.loads(attrs["json_attrs"])) - RUN_ATTRS)
        group_name = "maps" if "maps" in handle else "masks"
        images = {}
        for image_id, dataset in handle[group_name].items():
            images[image_id] = {
                "bytes": dataset[()].tobytes(), "dtype": str(dataset.dtype), "shape": dataset.shape,
                "chunks": dataset.chunks, "compression": dataset.compression,
                "attrs": {name: np.asarray(value).tolist() for name, value in dataset.attrs.items()},
            }
    return attrs, images


def test_shard_ids_are_strided_and_cover_the_split_once():
    shards = [shard_ids(IDS, shard, 3) for shard in range(3)]
    assert shards == [["img_0", "img_3", "img_6"], ["img_1", "img_4"], ["img_2", "img_5"]]
    with pytest.raises(ConfigError, match="shard 3 of 3 does not exist"):
        shard_ids(IDS, 3, 3)


def test_merged_sharded_seed_export_equals_the_unsharded_export(tmp_path: Path):
    config = _config(_write_dataset(tmp_path / "dataset"))
    model = tmp_path / "model.pt"
    _save_random_model(config, model)
    whole = tmp_path / "whole.h5"
    export_seeds.main(["--config", json.dumps(config), "--model", str(model), "--output", str(whole)])
    shards = [tmp_path / f"shard{index}.h5" for index in range(3)]
    for index, shard in enumerate(shards):
        export_seeds.main(["--config", json.dumps(config), "--model", str(model), "--output", str(shard),
                           "--shard", str(index), "--shards", "3"])
    assert SeedStore(shards[1]).ids() == ["img_1", "img_4"] and SeedStore(shards[1]).attrs["shard"] == "1/3"
    merged = tmp_path / "merged.h5"
    merge_stores.main(["--config", json.dumps(config), "--kind", "seeds", "--output", str(merged),
                       "--inputs", *map(str, reversed(shards))])
    whole_attrs, whole_images = store_contents(whole)
    merged_attrs, merged_images = store_contents(merged)
    assert sorted(whole_images) == IDS and whole_images["img_6"]["shape"] == (0, 30, 34)
    assert merged_images == whole_images
    assert merged_attrs.keys() == whole_attrs.keys()
    for name in whole_attrs:
        assert np.array_equal(merged_attrs[name], whole_attrs[name]), name
    merged_store = SeedStore(merged)
    assert merged_store.attrs["shards"] == 3
    assert merged_store.attrs["merge_provenance"]["stage"] == merge_stores.STAGE
    speeds = [SeedStore(shard).attrs["images_per_second"] for shard in shards]
    assert merged_store.attrs["images_per_second"] == pytest.approx(sum(speeds))
    # images decoded ahead by a DataLoader worker: the same seeds
    prefetched = tmp_path / "prefetched.h5"
    export_seeds.main(["--config", json.dumps({**config, "num_workers": 1}), "--model", str(model),
                       "--output", str(prefetched)])
    assert store_contents(prefetched)[1] == whole_images


def _mask_shards(tmp_path: Path, assignment: dict[str, int], shards: int) -> list[Path]:
    paths = [tmp_path / f"masks{index}.h5" for index in range(shards)]
    masks = {image_id: np.full((4, 5), index % 3, np.uint8) for index, image_id in enumerate(IDS)}
    writers = [MaskStoreWriter(path, num_classes=2, attrs={"split": "train_aug", "provenance": {"config_hash": "x"},
                                                            "images_per_second": 2.0, "seconds": 1.0})
               for path in paths]
    for writer in writers:
        writer.__enter__()
    for image_id, shard in assignment.items():
        writers[shard].add(image_id, masks[image_id])
    for writer in writers:
        writer.__exit__(None, None, None)
    return paths


def test_merged_mask_shards_follow_the_split_order_and_keep_every_mask(tmp_path: Path):
    config = _config(_write_dataset(tmp_path / "dataset"))
    paths = _mask_shards(tmp_path, {image_id: index % 2 for index, image_id in enumerate(IDS)}, 2)
    merged = tmp_path / "merged.h5"
    attrs = merge_stores.merge_stores(config, "masks", paths, merged)
    assert attrs["images_per_second"] == 4.0 and attrs["seconds"] == 1.0 and attrs["shards"] == 2
    _, images = store_contents(merged)
    assert sorted(images) == IDS
    assert images["img_4"]["bytes"] == np.full((4, 5), 1, np.uint8).tobytes()


def test_overlapping_or_incomplete_shards_are_refused(tmp_path: Path):
    config = _config(_write_dataset(tmp_path / "dataset"))
    incomplete = _mask_shards(tmp_path / "a", {image_id: 0 for image_id in IDS[:-1]}, 1)
    with pytest.raises(StoreError, match="1 images missing"):
        merge_stores.merge_stores(config, "masks", incomplete, tmp_path / "out.h5")
    first = _mask_shards(tmp_path / "b", {image_id: 0 for image_id in IDS}, 1)
    second = _mask_shards(tmp_path / "c", {"img_0": 0}, 1)
    with pytest.raises(StoreError, match="'img_0' is in both"):
        merge_stores.merge_stores(config, "masks", first + second, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_merged_sharded_inference_equals_the_unsharded_inference(tmp_path: Path):
    from wsss_core.segmentation import build_segmentation_network
    from wsss_core.stages import infer_segmentation
    from wsss_core.stages.infer_segmentation import CheckpointWeights

    config = _config(_write_dataset(tmp_path / "dataset"))
    network = {"network": "deeplab_v2", "backbone": "resnet18", "weights": None, "batch_norm": "train",
               "backbone_args": {"channels": [8, 16, 32, 64], "layers": [1, 1, 1, 1], "stem_width": 8}}
    torch.manual_seed(0)
    model = build_segmentation_network("deeplab_v2", 3, network, CheckpointWeights())
    model_path = tmp_path / "seg.pt"
    torch.save({"network": "deeplab_v2", "num_labels": 3, "model": model.state_dict(), "stage_config": network},
               model_path)
    job = json.dumps(dict(config, stage={"split": "train_aug", "scales": [1.0], "flip": True, "crf": None}))
    whole = tmp_path / "whole.h5"
    infer_segmentation.main(["--config", job, "--model", str(model_path), "--output", str(whole)])
    shards = [tmp_path / f"part{index}.h5" for index in range(2)]
    for index, shard in enumerate(shards):
        infer_segmentation.main(["--config", job, "--model", str(model_path), "--output", str(shard),
                                 "--shard", str(index), "--shards", "2"])
    merged = tmp_path / "merged.h5"
    merge_stores.main(["--config", job, "--kind", "masks", "--inputs", *map(str, shards), "--output", str(merged)])
    whole_attrs, whole_images = store_contents(whole)
    merged_attrs, merged_images = store_contents(merged)
    assert sorted(whole_images) == IDS and merged_images == whole_images
    assert merged_attrs.keys() == whole_attrs.keys()
    for name in whole_attrs:
        assert np.array_equal(merged_attrs[name], whole_attrs[name]), name
