"""Linear probe (frozen features, logistic regression per class) on the synthetic segmentation train split ->
classification mAP on its score split: do the pretrained stand-ins' features carry the 20 classes?"""
import sys, yaml, numpy as np, torch, torch.nn.functional as F
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from pathlib import Path
from wsss_core import workflow_config as resolve
from wsss_core.data import open_dataset
from wsss_core.data.transforms import normalize_to_tensor
from wsss_core.models.backbones import create_backbone
from wsss_core.models.weights import PretrainedWeights
from wsss_core.pretraining.networks import pooled_features
torch.set_num_threads(1); torch.manual_seed(0)
config = yaml.safe_load(open(ROOT / "config.yaml"))
ds = resolve.dataset_config(config, "synth")
reader = open_dataset(ds)
size = int(sys.argv[3]) if len(sys.argv) > 3 else 128
def feats(net, split):
    X, Y = [], []
    ids = reader.ids(resolve.split_for(config, "synth", split))
    with torch.inference_mode():
        for i in ids:
            x = normalize_to_tensor(reader.image(i))[None]
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            X.append(pooled_features(net, x)[0].numpy()); Y.append(reader.labels(i))
    return np.stack(X), np.stack(Y)
name, weights = sys.argv[1], sys.argv[2]
w = None if weights == "none" else PretrainedWeights(weights, ROOT / f"results/synth/pretrained/{weights}.safetensors", False)
kw = {"img_size": size} if "vit" in name or "swin" in name else {}
net = create_backbone(name, w, num_classes=0, **kw) if "resnet38" not in name else create_backbone(name, w)
net.eval()
Xtr, Ytr = feats(net, "train"); Xte, Yte = feats(net, "score")
mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
def average_precision(y, s):
    order = np.argsort(-s); y = y[order]; hits = np.cumsum(y)
    return float((hits / np.arange(1, len(y) + 1))[y > 0].mean())
Xt, Yt = torch.tensor(Xtr, dtype=torch.float32), torch.tensor(Ytr, dtype=torch.float32)
W = torch.zeros(Xt.shape[1], Yt.shape[1], requires_grad=True); b = torch.zeros(Yt.shape[1], requires_grad=True)
opt = torch.optim.LBFGS([W, b], max_iter=500, line_search_fn="strong_wolfe")
def closure():
    opt.zero_grad(); loss = F.binary_cross_entropy_with_logits(Xt @ W + b, Yt) + 1e-2 * (W ** 2).sum() / 2; loss.backward(); return loss
opt.step(closure)
S = (torch.tensor(Xte, dtype=torch.float32) @ W + b).detach().numpy()
aps = [average_precision(Yte[:, c], S[:, c]) for c in range(Yte.shape[1])]
print(f"{name} weights={weights} size={size}: linear-probe mAP on score {100*np.mean(aps):.1f} (train {len(Xtr)}, score {len(Xte)}, dim {Xtr.shape[1]}; prior mAP ~ {100*Yte.mean():.1f})")
