"""What IRN / PSA learn from: shares and precision of the confident labels of relation-label stores, on the score split.

    python scripts/diagnostics/relation_labels.py [--dataset synth] LABELS.h5 [LABELS.h5 ...]

For each store (``results/<dataset>/<run>/masks/{irn,psa}/relation_labels.h5``): the share of the pixels labelled
confident foreground, confident background and unsure (255); the precision of each confident kind (foreground: the
labelled class is the true one; background: the pixel is background); and the share of object pixels given their own
class. Run from the checkout that holds the stores (stop 30 compared SWTformer-V2's labels under RIB's thresholds and
under SIPE's background channel with it)."""
import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from wsss_core import workflow_config as resolve  # noqa: E402
from wsss_core.data import open_dataset  # noqa: E402
from wsss_core.io.seed_store import MaskStore  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--dataset", default="synth")
parser.add_argument("stores", nargs="+", type=Path)
args = parser.parse_args()
config = yaml.safe_load(open(ROOT / "config.yaml"))
reader = open_dataset(resolve.dataset_config(config, args.dataset))
ids = reader.ids(resolve.split_for(config, args.dataset, "score"))
for path in args.stores:
    store = MaskStore(path)
    counts = dict.fromkeys(("pixels", "fg", "bg", "unsure", "fg_right", "bg_right", "objects", "objects_right"), 0)
    for image_id in ids:
        truth = reader.mask(image_id)
        valid = truth != 255
        labels, truth = store.get(image_id)[valid], truth[valid]
        foreground, background = (labels > 0) & (labels < 255), labels == 0
        counts["pixels"] += labels.size
        counts["fg"] += foreground.sum()
        counts["bg"] += background.sum()
        counts["unsure"] += (labels == 255).sum()
        counts["fg_right"] += (foreground & (labels == truth)).sum()
        counts["bg_right"] += (background & (truth == 0)).sum()
        counts["objects"] += (truth > 0).sum()
        counts["objects_right"] += ((truth > 0) & (labels == truth)).sum()
    n = counts["pixels"]
    print(f"{path}: foreground {100 * counts['fg'] / n:.1f} % (precision {100 * counts['fg_right'] / max(counts['fg'], 1):.1f}), "
          f"background {100 * counts['bg'] / n:.1f} % (precision {100 * counts['bg_right'] / max(counts['bg'], 1):.1f}), "
          f"unsure {100 * counts['unsure'] / n:.1f} %; object pixels given their class "
          f"{100 * counts['objects_right'] / max(counts['objects'], 1):.1f} %")
