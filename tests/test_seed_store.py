"""HDF5 seed and mask stores: round trip, attributes, atomic writes, checks, pickling."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest

from wsss_core.errors import StoreError
from wsss_core.io.seed_store import MaskStore, MaskStoreWriter, SeedStore, SeedStoreWriter

PROVENANCE = {"stage": "wsss_core.stages.export_seeds", "config_hash": "abc123", "config": {"seed": 0}}


def write_seeds(path, method="cti", num_classes=20):
    maps = np.array([[[0.0, 0.25], [0.5, 1.0]], [[1.0, 0.75], [0.125, 0.0]]], dtype=np.float32)
    with SeedStoreWriter(path, method=method, num_classes=num_classes, attrs={"provenance": PROVENANCE}) as writer:
        writer.add("2007_000032", maps, np.array([3, 15]))
        writer.add("2007_000039", maps[:1, :1], np.array([7]))
    return maps


def test_seed_round_trip_types_and_attributes(tmp_path):
    path = tmp_path / "seeds" / "train_aug.h5"
    maps = write_seeds(path)
    store = SeedStore(path)
    assert store.ids() == ["2007_000032", "2007_000039"]
    assert "2007_000032" in store and "missing" not in store and len(store) == 2
    seeds = store.get("2007_000032")
    assert seeds.maps.dtype == np.float32 and seeds.keys.dtype == np.int64
    np.testing.assert_array_equal(seeds.maps, maps)  # these values are exact in float16
    assert seeds.keys.tolist() == [3, 15] and not seeds.has_background
    assert store.get("2007_000039").maps.shape == (1, 1, 2)
    assert (store.method, store.num_classes, store.normalization) == ("cti", 20, "minmax")
    assert store.has_background is False
    assert store.attrs == {"provenance": PROVENANCE}
    with h5py.File(path, "r", locking=False) as handle:  # on-disk layout
        dataset = handle["maps/2007_000032"]
        assert dataset.dtype == np.float16 and dataset.compression == "lzf" and dataset.chunks == (1, 2, 2)
        assert dataset.attrs["keys"].dtype == np.int16
        assert dataset.attrs["orig_size"].tolist() == [2, 2]
        assert handle.attrs["kind"] == "seeds"
    assert [p.name for p in path.parent.iterdir()] == ["train_aug.h5"]  # no temporary left


def test_failed_writer_leaves_nothing(tmp_path):
    path = tmp_path / "seeds.h5"
    with pytest.raises(RuntimeError):
        with SeedStoreWriter(path, method="cti", num_classes=2) as writer:
            writer.add("a", np.zeros((1, 2, 2)), np.array([1]))
            raise RuntimeError("export crashed")
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_bad_input(tmp_path):
    with SeedStoreWriter(tmp_path / "s.h5", method="cti", num_classes=2) as writer:
        writer.add("a", np.zeros((1, 2, 2)), np.array([1]))
        with pytest.raises(ValueError, match="already"):
            writer.add("a", np.zeros((1, 2, 2)), np.array([1]))
        with pytest.raises(ValueError, match="keys"):
            writer.add("b", np.zeros((2, 2, 2)), np.array([1]))
        with pytest.raises(ValueError, match="outside"):
            writer.add("b", np.zeros((1, 2, 2)), np.array([3]))
        with pytest.raises(ValueError, match="NaN"):
            writer.add("b", np.full((1, 2, 2), np.nan), np.array([1]))
        with pytest.raises(ValueError, match="background"):
            writer.add("b", np.zeros((2, 2, 2)), np.array([0, 1]))
        with pytest.raises(ValueError, match="HDF5"):
            writer.add("x/y", np.zeros((1, 2, 2)), np.array([1]))
        writer.add("empty", np.zeros((0, 3, 4)), np.zeros(0, dtype=np.int64))
    assert SeedStore(tmp_path / "s.h5").get("empty").maps.shape == (0, 3, 4)


def test_background_flag_recorded(tmp_path):
    with SeedStoreWriter(tmp_path / "s.h5", method="vitpcm", num_classes=2, normalization="max") as writer:
        writer.add("a", np.ones((2, 2, 2)), np.array([0, 2]))
    store = SeedStore(tmp_path / "s.h5")
    assert store.has_background and store.get("a").has_background and store.normalization == "max"


def test_check_and_missing_file_and_image_name_the_file(tmp_path):
    path = tmp_path / "seeds.h5"
    write_seeds(path)
    store = SeedStore(path)
    store.check(method="cti", num_classes=20)
    with pytest.raises(StoreError, match=r"written by method 'cti' with 20 classes.*'mctformer' with 80"):
        store.check(method="mctformer", num_classes=80)
    with pytest.raises(StoreError, match=str(path)):
        store.check(num_classes=80)
    with pytest.raises(StoreError, match="no image 'nope'"):
        store.get("nope")
    with pytest.raises(StoreError, match="absent.h5 does not exist"):
        SeedStore(tmp_path / "absent.h5")
    with pytest.raises(StoreError, match="not a mask store"):
        MaskStore(path).ids()


def test_reader_is_lazy_and_picklable(tmp_path):
    path = tmp_path / "seeds.h5"
    write_seeds(path)
    store = SeedStore(path)
    assert store._file is None  # nothing opened yet
    store.ids()
    clone = pickle.loads(pickle.dumps(store))
    assert clone._file is None
    np.testing.assert_array_equal(clone.get("2007_000039").maps, store.get("2007_000039").maps)


def test_mask_round_trip(tmp_path):
    path = tmp_path / "masks.h5"
    mask = np.array([[0, 1, 255], [2, 2, 0]], dtype=np.uint8)
    with MaskStoreWriter(path, num_classes=2, method="cti", attrs={"provenance": PROVENANCE}) as writer:
        writer.add("a", mask)
        writer.attrs["images_per_second"] = 3.5
        with pytest.raises(ValueError, match="outside"):
            writer.add("b", np.full((2, 2), 3, np.uint8))
    masks = MaskStore(path)
    restored = masks.get("a")
    assert restored.dtype == np.uint8 and restored.tolist() == mask.tolist()
    assert masks.attrs == {"provenance": PROVENANCE, "images_per_second": 3.5}
    masks.check(method="cti", num_classes=2)
    with pytest.raises(StoreError, match="not a seed store"):
        SeedStore(path).get("a")
