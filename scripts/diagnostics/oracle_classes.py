"""Misnaming or missing? A trained segmentation network scored twice from one inference: as it is, and with the
classes each image does not contain taken away (their probabilities set to 0 before the CRF and the argmax: an
oracle of the image labels, which the pseudo-masks it learned from had). The gap between the two is what the
network loses by naming objects wrongly; what is left below its labels is localisation.

    python scripts/diagnostics/oracle_classes.py RUN ROUTE [SPLIT]

ROUTE: ``REFINE.NETWORK`` (e.g. ``crf.deeplab_v2``: ``results/synth/RUN/seg/ROUTE/model.pt``) or ``decoder`` (the
method's own, ``results/synth/RUN/train/model.pt``). The inference is the workflow's (multi-scale + flip, its CRF),
with the job configuration the workflow resolves; SPLIT defaults to the evaluation split.
"""
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from wsss_core import workflow_config as resolve  # noqa: E402
from wsss_core.data import open_dataset  # noqa: E402
from wsss_core.evaluation.diagnostics import MaskScoring, describe_errors  # noqa: E402
from wsss_core.evaluation.metrics import label_names  # noqa: E402
from wsss_core.refine.crf import crf_probabilities  # noqa: E402
from wsss_core.stages.infer_segmentation import (  # noqa: E402
    crf_settings, load_checkpoint, method_segmenter, network_segmenter,
)
from wsss_core.utils.device import resolve_device  # noqa: E402

run, route = sys.argv[1], sys.argv[2]
config = yaml.safe_load(open(ROOT / "config.yaml"))
split = sys.argv[3] if len(sys.argv) > 3 else resolve.split_for(config, "synth", "evaluate")
if route == "decoder":
    params, model_path = resolve.decoder_params(config, "synth", run), ROOT / "results/synth" / run / "train/model.pt"
else:
    network = route.split(".")[1]
    params = resolve.stage_params(config, "synth", "segmentation", network, "inference")
    model_path = ROOT / "results/synth" / run / "seg" / route / "model.pt"
stage = resolve.job_config(config, "synth", run, params, with_weights=False)["stage"]
checkpoint = load_checkpoint(model_path)
device = resolve_device("cpu")
segment = method_segmenter(checkpoint, device) if "method" in checkpoint else network_segmenter(checkpoint, stage, device)
crf = crf_settings(stage)
reader = open_dataset(resolve.dataset_config(config, "synth"))
results = {name: MaskScoring(reader.num_classes + 1) for name in ("as it is", "image classes given")}
for image_id in reader.ids(split):
    image, truth = reader.image(image_id), reader.mask(image_id)
    probabilities = segment(image)
    absent = np.ones(reader.num_classes + 1, bool)
    absent[0] = False
    absent[np.flatnonzero(reader.labels(image_id) > 0.5) + 1] = False
    oracle = probabilities.copy()
    oracle[absent] = 0.0
    oracle /= np.clip(oracle.sum(axis=0, keepdims=True), 1e-12, None)
    for name, maps in (("as it is", probabilities), ("image classes given", oracle)):
        if crf is not None:
            maps = crf_probabilities(image, maps, crf)
        results[name].update(maps.argmax(axis=0).astype(np.uint8), truth)
print(f"{run} {route} on {split} ({model_path}):")
for name, scoring in results.items():
    scores = scoring.result(label_names(reader))
    print(f"  {name}: mIoU {100 * scores['miou']:.1f}; " + describe_errors(scores["diagnostics"]["errors"]))
