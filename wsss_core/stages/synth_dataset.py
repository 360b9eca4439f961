"""Stage ``synth_dataset``: write the synthetic VOC-layout benchmark to ``--output``.

    python -m wsss_core.stages.synth_dataset --config '{"stage": {"preset": "default", "seed": 0}}' \\
        --output results/synth/dataset

``config["stage"]`` holds the generator parameters (:class:`wsss_core.data.synth.SynthParams`:
``preset``, ``style``, ``image_size``, ``num_train_aug``, ``num_train``, ``num_val``, ``seed``, ``max_objects``,
``ignore_band``, ``jpeg_quality``, ``workers``); ``seed`` falls back to ``config["seed"]``. ``style`` picks
the drawn world (``default`` or ``b``, :data:`wsss_core.data.synth.SYNTH_STYLES`); the dataset's
``classes`` (``config["dataset"]``, when given) must be that style's class set. The dataset is
written to a temporary folder next to ``--output`` and renamed onto it, so an interrupted run never
leaves a dataset that looks complete. ``synth_manifest.json`` records the parameters, counts, class
names and provenance.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

from wsss_core.data import open_dataset
from wsss_core.data.synth import synth_params, synth_style, write_dataset
from wsss_core.errors import ConfigError
from wsss_core.stages._cli import run, stage_parser
from wsss_core.utils.atomic import new_folder_mode, remove_stale_partials
from wsss_core.utils.provenance import provenance

STAGE = "wsss_core.stages.synth_dataset"
LOG = logging.getLogger(STAGE)
SPLITS = ("train_aug", "train", "val")


def _check_readable(root: Path, class_set: str) -> None:
    """The VOC reader parses every split list, finds every image and knows every annotated class name
    (cheap checks)."""
    reader = open_dataset({"name": "synth", "format": "voc", "root": str(root), "classes": class_set,
                           "splits": {split: f"ImageSets/Segmentation/{split}.txt" for split in SPLITS}})
    for split in SPLITS:
        ids = reader.ids(split)
    reader.labels(ids[0])


def _check_classes(config: dict, class_set: str, style: str) -> None:
    """The dataset entry names the class set the style writes (else every reader would mislabel it)."""
    dataset = config.get("dataset") or {}
    if "classes" in dataset and dataset["classes"] != class_set:
        name = dataset.get("name", "<name>")
        raise ConfigError(
            f"datasets.{name}.classes is '{dataset['classes']}' but datasets.{name}.generator.style '{style}' "
            f"writes the class set '{class_set}'; set datasets.{name}.classes: {class_set}"
        )


def build_dataset(config: dict, output: Path) -> dict:
    """Generate into a temporary sibling of ``output`` and rename it onto ``output``; returns the manifest."""
    params = synth_params(config.get("stage", {}), default_seed=int(config.get("seed", 0)))
    class_set = synth_style(params.style).class_set
    _check_classes(config, class_set, params.style)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(output)  # a killed run's folder (SIGKILL skips the cleanup below)
    shutil.rmtree(output.with_name(f".{output.name}.stale"), ignore_errors=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    temporary.chmod(new_folder_mode())  # mkdtemp makes an owner-only folder; honour the umask instead
    try:
        started = time.perf_counter()
        summary = write_dataset(temporary, params)
        _check_readable(temporary, class_set)
        seconds = time.perf_counter() - started
        total = summary["counts"]["train_aug"] + summary["counts"]["val"]
        manifest = {
            **summary,
            "seconds": round(seconds, 2),
            "images_per_second": round(total / max(seconds, 1e-9), 1),
            "provenance": provenance(config, STAGE),
        }
        (temporary / "synth_manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if output.exists():
            stale = output.with_name(f".{output.name}.stale")
            shutil.rmtree(stale, ignore_errors=True)
            output.rename(stale)
            temporary.rename(output)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            temporary.rename(output)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    LOG.info("wrote %d images to %s in %.1f s (%.0f images/s)", total, output, seconds, total / max(seconds, 1e-9))
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser: argparse.ArgumentParser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="dataset folder to create (VOC layout)")
    arguments = parser.parse_args(argv)
    run(lambda: build_dataset(arguments.config, arguments.output))


if __name__ == "__main__":
    main()
