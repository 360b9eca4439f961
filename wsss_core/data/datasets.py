"""Torch datasets over a reader, indexed by ``(epoch, index)``.

The training loop's :class:`~wsss_core.training.loop.EpochSampler` yields ``(epoch, index)`` pairs; each
sample's augmentation draws only from ``sample_rng(seed, epoch, index)``, so a resumed or re-run epoch
sees the same crops whatever the number of workers. What a sample holds is the method's business: the
dataset calls ``sample_fn`` (e.g. ``Method.training_sample``) and adds ``image_id`` and ``index``.
Readers hold no open files, so these datasets pickle into DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from wsss_core.data.voc import DatasetReader
from wsss_core.errors import StoreError
from wsss_core.utils.seeding import sample_rng

ImageSampleFn = Callable[[np.ndarray, np.ndarray, np.random.Generator], dict[str, Any]]
MaskSampleFn = Callable[[np.ndarray, np.ndarray, np.random.Generator], dict[str, Any]]


def _split_key(key: tuple[int, int] | int) -> tuple[int, int]:
    """``(epoch, index)``; a plain index means epoch 0 (handy outside the training loop)."""
    if isinstance(key, (tuple, list)):
        return int(key[0]), int(key[1])
    return 0, int(key)


class TrainingDataset(Dataset):
    """Classification samples: ``sample_fn(image, labels, rng)`` + ``image_id`` + ``index``."""

    def __init__(self, reader: DatasetReader, split: str, sample_fn: ImageSampleFn, seed: int) -> None:
        self.reader = reader
        self.split = split
        self.image_ids = reader.ids(split)
        self.sample_fn = sample_fn
        self.seed = seed

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Any]:
        epoch, index = _split_key(key)
        image_id = self.image_ids[index]
        sample = dict(self.sample_fn(self.reader.image(image_id), self.reader.labels(image_id),
                                     sample_rng(self.seed, epoch, index)))
        sample.update(image_id=image_id, index=index)
        return sample


class SegmentationTrainingDataset(Dataset):
    """Segmentation samples on pseudo-masks: ``sample_fn(image, mask, rng)`` + ``image_id`` + ``index``,
    where ``mask_source(image_id)`` gives the ``uint8`` mask (e.g. ``MaskStore.get``)."""

    def __init__(self, reader: DatasetReader, split: str, mask_source: Callable[[str], np.ndarray],
                 sample_fn: MaskSampleFn, seed: int) -> None:
        self.reader = reader
        self.split = split
        self.image_ids = reader.ids(split)
        self.mask_source = mask_source
        self.sample_fn = sample_fn
        self.seed = seed

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Any]:
        epoch, index = _split_key(key)
        image_id = self.image_ids[index]
        image = self.reader.image(image_id)
        mask = np.asarray(self.mask_source(image_id), dtype=np.uint8)
        if mask.shape != image.shape[:2]:
            raise StoreError(
                f"pseudo-mask of '{image_id}' is {mask.shape} but the image is {image.shape[:2]}; the mask "
                "store was made from another dataset or resolution; re-run the stage that wrote it"
            )
        sample = dict(self.sample_fn(image, mask, sample_rng(self.seed, epoch, index)))
        sample.update(image_id=image_id, index=index)
        return sample
