"""Does a ViT's class-token attention find the objects? The question behind MCTformer, CTI, SWTformer and ECA,
which read their seeds from attention and, in the papers, start from an ImageNet DeiT (ECA: DINO) whose
attention already does.

    python scripts/diagnostics/attention_localisation.py BACKBONE WEIGHTS [SPLIT] [SIZE]

``WEIGHTS``: a stand-in name (``results/synth/pretrained/<name>.safetensors``) or ``none`` (random init, the
floor). For every image of the synthetic ``SPLIT`` (default the score split) and every block, the class token's
attention over the patches (mean over heads) is upsampled to the image and scored against the objects' union
(every foreground pixel, class-agnostic) with the seed evaluation's threshold-free localisation: pointing game and
energy inside, each beside its chance level (the foreground's area share). Energy gain 1 = a flat map. And how
local the patch-to-patch attention is (MCTformer's A_pp refinement multiplies the maps by it): the perplexity of
each patch's attention over the patches, averaged (1 = itself only, the patch count = a flat average).
"""
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from wsss_core import workflow_config as resolve  # noqa: E402
from wsss_core.data import open_dataset  # noqa: E402
from wsss_core.data.transforms import normalize_to_tensor  # noqa: E402
from wsss_core.evaluation.diagnostics import localisation_statistics, mean_row_perplexity  # noqa: E402
from wsss_core.models.backbones import create_backbone  # noqa: E402
from wsss_core.models.multi_token_vit import block_with_attention  # noqa: E402
from wsss_core.models.weights import PretrainedWeights  # noqa: E402

torch.set_num_threads(1)
torch.manual_seed(0)
name, weights = sys.argv[1], sys.argv[2]
split = sys.argv[3] if len(sys.argv) > 3 else "score"
size = int(sys.argv[4]) if len(sys.argv) > 4 else 128
config = yaml.safe_load(open(ROOT / "config.yaml"))
reader = open_dataset(resolve.dataset_config(config, "synth"))
ids = reader.ids(resolve.split_for(config, "synth", split))
file = None if weights == "none" else PretrainedWeights(weights, ROOT / f"results/synth/pretrained/{weights}.safetensors", False)
net = create_backbone(name, file, num_classes=0, img_size=size).eval()
prefix = net.num_prefix_tokens
grid = size // net.patch_embed.patch_size[0]
per_block: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in net.blocks]
perplexity: list[list[float]] = [[] for _ in net.blocks]
with torch.inference_mode():
    for image_id in ids:
        image = reader.image(image_id)
        height, width = image.shape[:2]
        x = F.interpolate(normalize_to_tensor(image)[None], size=(size, size), mode="bilinear", align_corners=False)
        tokens = net.norm_pre(net._pos_embed(net.patch_embed(x)))
        gt = np.asarray(reader.mask(image_id)).astype(np.int64)
        foreground = np.where(gt == 255, 255, (gt > 0).astype(np.int64))
        for index, block in enumerate(net.blocks):
            tokens, attention = block_with_attention(block, tokens)
            cls = attention[0, :, 0, prefix:].mean(0).reshape(1, 1, grid, grid)
            cls = F.interpolate(cls, size=(height, width), mode="bilinear", align_corners=False)[0]
            cls = (cls / cls.max().clamp_min(1e-12)).numpy()
            per_block[index].append((cls, np.array([1]), foreground))
            perplexity[index].append(mean_row_perplexity(attention[0, :, prefix:, prefix:].mean(0).detach().numpy()))
print(f"{name} weights={weights} split={split} ({len(ids)} images, {size} px): class-token attention vs the objects")
print(f"block | pointing % (chance) | energy inside % (flat map) | energy gain | patch-attention perplexity (of {grid * grid})")
for index, maps in enumerate(per_block):
    s = localisation_statistics(maps)
    print(f"{index:5d} | {100 * s['pointing_accuracy']:5.1f} ({100 * s['pointing_chance']:.1f}) | "
          f"{100 * s['energy_inside']:5.1f} ({100 * s['pointing_chance']:.1f}) | {s['energy_gain']:.2f} | "
          f"{np.mean(perplexity[index]):.1f}")
