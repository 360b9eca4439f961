"""k-NN top-1 of a backbone on the pretraining pool (same protocol as pretrain_backbone): random init vs a file."""
import sys, torch
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from pathlib import Path
from wsss_core.data.synth_pretrain import read_pool
from wsss_core.models.backbones import create_backbone
from wsss_core.models.weights import PretrainedWeights
from wsss_core.stages.pretrain_backbone import embed, knn_top1
torch.set_num_threads(1); torch.manual_seed(0)
name, weights = sys.argv[1], sys.argv[2]
w = None if weights == "none" else PretrainedWeights(weights, ROOT / f"results/synth/pretrained/{weights}.safetensors", False)
net = create_backbone(name, w, img_size=64, num_classes=0)
ti, tl = read_pool(ROOT / "results/synth/pretrain_pool", "train"); vi, vl = read_pool(ROOT / "results/synth/pretrain_pool", "val")
dev = torch.device("cpu")
with torch.inference_mode():
    a = knn_top1(embed(net, ti, 64, dev), torch.as_tensor(tl), embed(net, vi, 64, dev), torch.as_tensor(vl), 100)
print(f"{name} weights={weights}: k-NN top-1 {100*a:.1f} %")
