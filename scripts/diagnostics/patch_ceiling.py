"""Resolution ceiling of patch-level seeds: the ground truth averaged over each 8×8 patch (a 16×16 grid at 128 px),
upsampled bilinearly, argmax -> mIoU on the score split. What a perfect patch-grid map of the synthetic images scores.

    python scripts/diagnostics/patch_ceiling.py [PATCH] [MASKS.h5]

With a mask store (e.g. the pseudo-masks a DeepLab learns from; PATCH 8 = its output stride) the store's masks are
averaged instead of the ground truth: what a network that reproduced them exactly at that stride would score."""
import sys, yaml, numpy as np, torch, torch.nn.functional as F
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from wsss_core import workflow_config as resolve
from wsss_core.data import open_dataset
from wsss_core.io.seed_store import MaskStore
config = yaml.safe_load(open(ROOT / "config.yaml"))
reader = open_dataset(resolve.dataset_config(config, "synth"))
C = reader.num_classes; conf = np.zeros((C + 1, C + 1), np.int64); patch = int(sys.argv[1]) if len(sys.argv) > 1 else 8
store = MaskStore(__import__("pathlib").Path(sys.argv[2])) if len(sys.argv) > 2 else None
for i in reader.ids(resolve.split_for(config, "synth", "score")):
    gt = reader.mask(i); h, w = gt.shape; valid = gt != 255
    source = gt if store is None else store.get(i)
    onehot = torch.zeros(C + 1, h, w); g = torch.as_tensor(np.where(source != 255, source, 0)).long()
    onehot.scatter_(0, g[None], 1.0)
    small = F.adaptive_avg_pool2d(onehot[None], (h // patch, w // patch))
    pred = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0].argmax(0).numpy()
    conf += np.bincount((C + 1) * gt[valid].astype(np.int64) + pred[valid], minlength=(C + 1) ** 2).reshape(C + 1, C + 1)
iou = np.diag(conf) / np.maximum(conf.sum(0) + conf.sum(1) - np.diag(conf), 1)
print(f"{'ground truth' if store is None else sys.argv[2]}, patch {patch}: ceiling mIoU {100 * iou[conf.sum(1) > 0].mean():.1f}")
