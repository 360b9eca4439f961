"""Which part of MCTformer-V2's seed formula limits the synthetic seeds? Seed mIoU (best background threshold) on the
score split of: ReLU(P) alone, A_cp alone, A_cp ⊙ ReLU(P), and the full A_pp·(A_cp ⊙ ReLU(P)); single scale + flip.
Beside each, the threshold-free localisation of the seed evaluation (pointing game, energy inside the class and on any
object, each with its chance level: wsss_core.evaluation.diagnostics.localisation_statistics)."""
import sys, yaml, numpy as np, torch, torch.nn.functional as F
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from pathlib import Path
from wsss_core import workflow_config as resolve
from wsss_core.stages.export_seeds import load_trained_model
from wsss_core.data import open_dataset
from wsss_core.data.transforms import normalize_to_tensor
from wsss_core.evaluation.diagnostics import localisation_statistics, mean_row_perplexity
from wsss_core.methods.mctformer import minmax_normalize
from wsss_core.models.multi_token_vit import class_to_patch_attention, patch_to_patch_attention, refine_with_patch_attention
torch.set_num_threads(2)
config = yaml.safe_load(open(ROOT / "config.yaml"))
job = resolve.job_config(config, "synth", "mctformer", {})
reader = open_dataset(job["dataset"])
method, model = load_trained_model(Path(sys.argv[1]), job, reader.num_classes); model.eval()
C = reader.num_classes
ids = reader.ids(resolve.split_for(config, "synth", "score"))
thresholds = np.round(np.arange(0.0, 0.96, 0.05), 2)
variants = ("P", "Acp", "Acp*P", "full")
conf = {v: np.zeros((len(thresholds), C + 1, C + 1), np.int64) for v in variants}
localisation = {v: [] for v in variants}
perplexities = []  # of A_pp's rows (normalised): how many patches each patch effectively averages over
cls_blocks = method.class_attention_blocks; patch_blocks = method.patch_attention_blocks
with torch.inference_mode():
    for i in ids:
        image = reader.image(i); gt = reader.mask(i); labels = reader.labels(i)
        present = np.flatnonzero(labels > 0.5); h, w = image.shape[:2]
        x = normalize_to_tensor(image)[None]; x = torch.cat([x, x.flip(-1)])
        out = model(x)
        P = F.relu(out.patch_cams); B, _, gh, gw = P.shape
        att = out.encoder.attentions
        acp = class_to_patch_attention(att, C, cls_blocks).reshape(B, C, gh, gw)
        app = patch_to_patch_attention(att, C, patch_blocks)
        perplexities.append(mean_row_perplexity(app.detach().numpy()))
        maps = {"P": P, "Acp": acp, "Acp*P": acp * P, "full": refine_with_patch_attention(acp * P, app)}
        valid = gt != 255
        for v, m in maps.items():
            m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
            m = m[0] + m[1].flip(-1)
            m = minmax_normalize(m[torch.as_tensor(present)]).numpy()
            localisation[v].append((m, present + 1, gt))
            for k, t in enumerate(thresholds):
                stack = np.concatenate([np.full((1, h, w), t), m])
                pred = np.concatenate([[0], present + 1])[stack.argmax(0)]
                conf[v][k] += np.bincount((C + 1) * gt[valid].astype(np.int64) + pred[valid], minlength=(C + 1) ** 2).reshape(C + 1, C + 1)
for v in variants:
    best = (-1, 0)
    for k, t in enumerate(thresholds):
        c = conf[v][k]; iou = np.diag(c) / np.maximum(c.sum(0) + c.sum(1) - np.diag(c), 1)
        present_cls = (c.sum(1) > 0)
        miou = iou[present_cls].mean()
        best = max(best, (miou, t))
    loc = localisation_statistics(localisation[v])
    print(f"{v:6s} seed mIoU {100*best[0]:.1f} at bg threshold {best[1]:.2f}; pointing {100*loc['pointing_accuracy']:.1f} "
          f"(chance {100*loc['pointing_chance']:.1f}), energy inside {100*loc['energy_inside']:.1f} (flat "
          f"{100*loc['pointing_chance']:.1f}), on any object {100*loc['energy_on_objects']:.1f} (flat {100*loc['objects_chance']:.1f})")
print(f"A_pp rows average over {np.mean(perplexities):.1f} of the {gh * gw} patches (perplexity of the row-normalised "
      "attention; 1 = only itself, all = a flat average)")
