"""Stage ``merge_stores``: the shards of a sharded export (seeds) or inference (masks) as one store.

    python -m wsss_core.stages.merge_stores --config JSON --kind seeds|masks \\
        --inputs shard0.h5 shard1.h5 ... --output merged.h5

Why shards: seed export over COCO's 82,081 images, or multi-scale + CRF inference, takes many GPU-hours
in one job; split into N jobs (``sharding.shards`` in config.yaml) they run in parallel on a cluster.
Shard ``i`` of ``N`` holds the images ``ids[i::N]`` of the split (:func:`shard_ids`): strided, so that
every shard gets a similar mix of image sizes when the list is sorted by anything.

The merge rewrites every image in the order of the split list, which is the order an unsharded run
writes them, through the same store writer: each array is the shard's float16/uint8 array unchanged
(float16 → float32 → float16 is exact), with the same chunking, compression and attributes. So the
merged store equals the unsharded one image by image, bit for bit, and in its file attributes except the
throughput (``images_per_second``: the sum over the shards, i.e. of the parallel jobs; ``seconds``: the
slowest shard) and ``shards`` (N). Its ``provenance`` is the shards' (they must agree: same stage, same
configuration hash); the merge's own goes to ``merge_provenance``.

Reads ``dataset`` (to list the split) and ``stage.split``; a missing, duplicated or foreign image, or
shards from different methods / configurations, is a ``StoreError`` naming the file.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wsss_core.data import open_dataset
from wsss_core.errors import ConfigError, StoreError
from wsss_core.io.seed_store import MaskStore, MaskStoreWriter, SeedStore, SeedStoreWriter
from wsss_core.stages._cli import run, stage_parser
from wsss_core.utils.provenance import provenance

LOG = logging.getLogger(__name__)
STAGE = "wsss_core.stages.merge_stores"
KINDS = ("seeds", "masks")
# attributes that legitimately differ between shards (throughput, which shard)
PER_SHARD_ATTRS = ("images_per_second", "seconds", "shard", "provenance")


def shard_ids(ids: Sequence[str], shard: int, shards: int) -> list[str]:
    """Shard ``shard`` (0-based) of ``shards``: ``ids[shard::shards]``."""
    if shards < 1 or not 0 <= shard < shards:
        raise ConfigError(f"shard {shard} of {shards} does not exist: use 0 <= --shard < --shards and --shards >= 1")
    return list(ids[shard::shards])


def add_shard_arguments(parser: Any) -> None:
    """``--shard I --shards N`` of the stages that can run sharded (default: the whole split)."""
    parser.add_argument("--shard", type=int, default=0, help="0-based index of this shard (default 0)")
    parser.add_argument("--shards", type=int, default=1, help="number of shards the split is cut into (default 1)")


def _open(kind: str, path: Path) -> SeedStore | MaskStore:
    return SeedStore(path) if kind == "seeds" else MaskStore(path)


def _common_value(stores: Sequence[SeedStore | MaskStore], name: str, read: Any) -> Any:
    """The value every shard has for ``name``; a StoreError names the first shard that differs."""
    first = read(stores[0])
    for store in stores[1:]:
        if read(store) != first:
            raise StoreError(
                f"shard {store.path} has {name} {read(store)!r} but {stores[0].path} has {first!r}; the shards "
                "come from different runs: delete them and re-run the sharded stage"
            )
    return first


def merge_stores(
    config: Mapping[str, Any], kind: str, inputs: Sequence[Path], output: Path
) -> dict[str, Any]:
    """Write the shards ``inputs`` of kind ``seeds`` or ``masks`` as one store at ``output`` in the order
    of the split list; returns the merged file's caller attributes."""
    if kind not in KINDS:
        raise ConfigError(f"--kind must be one of {list(KINDS)}, got '{kind}'")
    if not inputs:
        raise ConfigError("merge_stores needs at least one --inputs shard")
    stores = [_open(kind, Path(path)) for path in inputs]
    split = dict(config.get("stage") or {}).get("split") or _common_value(stores, "split", lambda s: s.attrs.get("split"))
    ids = open_dataset(config["dataset"]).ids(split)
    owner: dict[str, SeedStore | MaskStore] = {}
    for store in stores:
        for image_id in store.ids():
            if image_id in owner:
                raise StoreError(
                    f"image '{image_id}' is in both {owner[image_id].path} and {store.path}; the shards overlap: "
                    "delete them and re-run the sharded stage"
                )
            owner[image_id] = store
    missing = [image_id for image_id in ids if image_id not in owner]
    foreign = sorted(set(owner) - set(ids))
    if missing or foreign:
        raise StoreError(
            f"the shards {[str(p) for p in inputs]} do not cover split '{split}' exactly: "
            f"{len(missing)} images missing (first: {missing[:3]}), {len(foreign)} not in the split "
            f"(first: {foreign[:3]}); re-run the shards of this split"
        )
    _common_value(stores, "configuration hash", lambda s: (s.attrs.get("provenance") or {}).get("config_hash"))
    num_classes = _common_value(stores, "num_classes", lambda s: s.num_classes)
    method = _common_value(stores, "method", lambda s: s.method)
    shared = {
        name: value for name, value in stores[0].attrs.items() if name not in PER_SHARD_ATTRS
    }
    for store in stores[1:]:
        _common_value([stores[0], store], "attributes", lambda s: {
            name: value for name, value in s.attrs.items() if name not in PER_SHARD_ATTRS
        })
    speeds = [float(store.attrs.get("images_per_second", float("nan"))) for store in stores]
    attrs: dict[str, Any] = {
        **shared,
        "provenance": stores[0].attrs.get("provenance"),
        "merge_provenance": provenance(dict(config), STAGE),
        "shards": len(stores),
        "images_per_second": sum(speeds),
        "seconds": max(float(store.attrs.get("seconds", 0.0)) for store in stores),
    }
    if kind == "seeds":
        normalization = _common_value(stores, "normalization", lambda s: s.normalization)
        with SeedStoreWriter(output, method=method, num_classes=num_classes, normalization=normalization,
                             attrs=attrs) as writer:
            for image_id in ids:
                maps = owner[image_id].get(image_id)
                writer.add(image_id, maps.maps, maps.keys)
    else:
        with MaskStoreWriter(output, num_classes=num_classes, method=method, attrs=attrs) as writer:
            for image_id in ids:
                writer.add(image_id, owner[image_id].get(image_id))
    for store in stores:
        store.close()
    LOG.info("merged %d shards (%d images of %s) into %s", len(stores), len(ids), split, output)
    return attrs


def main(argv: Sequence[str] | None = None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--kind", required=True, choices=KINDS, help="seeds (SeedStore) or masks (MaskStore)")
    parser.add_argument("--inputs", required=True, nargs="+", type=Path, help="the shard stores, any order")
    parser.add_argument("--output", required=True, type=Path, help="merged store to write")
    args = parser.parse_args(argv)
    run(lambda: merge_stores(args.config, args.kind, args.inputs, args.output))


if __name__ == "__main__":
    main()
