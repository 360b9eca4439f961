"""Where do CTI's seeds go empty? Components of M = A_pp · (A_cp ⊙ ReLU(P)) for the present classes."""
import sys, yaml, numpy as np, torch
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from wsss_core import workflow_config as resolve
from wsss_core.stages.export_seeds import load_trained_model
from wsss_core.data import open_dataset
from wsss_core.data.transforms import normalize_to_tensor  # noqa
run = sys.argv[1] if len(sys.argv) > 1 else "cti"
config = yaml.safe_load(open(ROOT / "config.yaml"))
job = resolve.job_config(config, "synth", run, {"split": resolve.split_for(config, "synth", "score")})
reader = open_dataset(job["dataset"])
method, model = load_trained_model(ROOT / f"results/synth/{run}/train/model.pt", job, reader.num_classes)
model.eval(); torch.set_num_threads(1)
from wsss_core.methods.cti import _layer_sets
blocks = _layer_sets(model)
ids = reader.ids(job["stage"]["split"])[:60]
stats = []
with torch.inference_mode():
    for i in ids:
        image = reader.image(i); labels = reader.labels(i)
        present = np.flatnonzero(labels > 0.5)
        x = normalize_to_tensor(image)[None]
        out = model(x)
        P = out.cams  # relu(logits_map)
        logits_map = None
        acp = model.class_patch_map(out, blocks.seed_class_patch)
        for c in present:
            k = c + 1
            p = P[0, k]; a = acp[0, k]
            stats.append(dict(pos_frac=float((p > 0).float().mean()), patch_logit=float(out.patch_logits[0, c]),
                              class_logit=float(out.class_logits[0, c]), acp_max=float(a.max()), pmax=float(p.max())))
pf = np.array([s["pos_frac"] for s in stats]); pl = np.array([s["patch_logit"] for s in stats]); cl = np.array([s["class_logit"] for s in stats])
print(f"{run}: {len(stats)} present (image, class) pairs from {len(ids)} images")
print(f"share with ReLU(P) all zero: {np.mean(pf == 0):.2f}; median positive fraction {np.median(pf):.3f}")
print(f"patch logits (mean of P map) of present classes: median {np.median(pl):.2f}, share > 0: {np.mean(pl > 0):.2f}")
print(f"class-token logits of present classes: median {np.median(cl):.2f}, share > 0: {np.mean(cl > 0):.2f}")
