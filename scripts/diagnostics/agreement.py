"""Has a segmentation network learned its labels? Its predictions scored with its training labels as the truth.

    python scripts/diagnostics/agreement.py PREDICTIONS.h5 LABELS.h5

PREDICTIONS: the network's mask store on images it was trained on (the rule's inference command with
``--split train``); LABELS: the pseudo-masks it learned from (``masks/<refine>/masks.h5`` or ``masks/own/masks.h5``).
Prints the mIoU, pixel accuracy and where the labels' object pixels went (``evaluation.diagnostics``), over the
images both stores hold; pixels the labels leave unlabelled (255) are not scored.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from wsss_core.evaluation.diagnostics import MaskScoring, describe_errors  # noqa: E402
from wsss_core.io.seed_store import MaskStore  # noqa: E402

predictions, labels = MaskStore(Path(sys.argv[1])), MaskStore(Path(sys.argv[2]))
ids = sorted(set(predictions.ids()) & set(labels.ids()))
scoring = MaskScoring(labels.num_classes + 1)
for image_id in ids:
    scoring.update(predictions.get(image_id), labels.get(image_id))
scores = scoring.result(["background", *(f"class {k}" for k in range(1, labels.num_classes + 1))])
print(f"{len(ids)} images: agreement with the labels mIoU {100 * scores['miou']:.1f}, pixel accuracy "
      f"{100 * scores['pixel_accuracy']:.1f}")
print("the labels' object pixels:", describe_errors(scores["diagnostics"]["errors"]))
