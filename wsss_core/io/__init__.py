"""Artefact stores: HDF5 files of per-image CAM seeds and label masks."""

from wsss_core.io.seed_store import MaskStore, MaskStoreWriter, SeedStore, SeedStoreWriter

__all__ = ["MaskStore", "MaskStoreWriter", "SeedStore", "SeedStoreWriter"]
