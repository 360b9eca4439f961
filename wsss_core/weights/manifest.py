"""What each ``weights.files`` key of config.yaml is, where it comes from, and what its hash is known to be.

Hashes are only those that can be read from a publisher: torch-hub file names carry the first 8 hex
digits of the file's SHA-256 (``deit_small_patch16_224-cd65a155.pth``; ``torch.hub`` checks exactly this
prefix), taken here from the URLs in timm's pretrained configs. The Hugging Face files, the DINO, SegFormer
and Swin releases and the converted ResNet-38 publish no hash that this project could read, so their
entries say so (``sha256_prefix=None``); pin the hash of a file you trust with ``weights.sha256.<key>``
in config.yaml (``python -m wsss_core.weights check`` prints it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WeightEntry:
    """One pretrained file."""

    key: str  # name under weights.files
    backbone: str  # the loader that verifies it (a wsss_core.models backbone name, or resnet38)
    what: str
    timm_tag: str | None  # timm's pretrained tag, when timm (or its Hugging Face hub) distributes it
    url: str  # where the file named in config.yaml comes from
    published_file: str | None  # the file name the publisher gives it (the hash prefix applies to it)
    sha256_prefix: str | None  # published SHA-256 prefix of published_file, or None
    hash_source: str  # where the prefix comes from, or why there is none


def _hf(tag: str, filename: str = "model.safetensors") -> str:
    return f"https://huggingface.co/timm/{tag}/resolve/main/{filename}"


NO_HASH_HF = "Hugging Face shows an LFS SHA-256 on the file's page; none is readable from this project"
MANIFEST: dict[str, WeightEntry] = {
    entry.key: entry
    for entry in (
        WeightEntry("deit_small", "deit_small", "DeiT-S/16 ImageNet-1k (MCTformer, CTI, SWTformer)",
                    "deit_small_patch16_224.fb_in1k", "https://dl.fbaipublicfiles.com/deit/deit_small_patch16_224-cd65a155.pth",
                    "deit_small_patch16_224-cd65a155.pth", "cd65a155", "torch-hub file name in timm's pretrained cfg url"),
        WeightEntry("deit_base", "deit_base", "DeiT-B/16 ImageNet-1k (ToCo, MCC)",
                    "deit_base_patch16_224.fb_in1k", "https://dl.fbaipublicfiles.com/deit/deit_base_patch16_224-b5f2ef4d.pth",
                    "deit_base_patch16_224-b5f2ef4d.pth", "b5f2ef4d", "torch-hub file name in timm's pretrained cfg url"),
        WeightEntry("vit_base_384", "vit_base_384", "ViT-B/16 384 px, ImageNet-21k → 1k (ViT-PCM)",
                    "vit_base_patch16_384.orig_in21k_ft_in1k", _hf("vit_base_patch16_384.orig_in21k_ft_in1k"),
                    None, None, NO_HASH_HF),
        WeightEntry("swin_tiny", "swin_tiny", "Swin-T window 7, ImageNet-1k (SWTformer)",
                    "swin_tiny_patch4_window7_224.ms_in1k", _hf("swin_tiny_patch4_window7_224.ms_in1k"),
                    None, None, NO_HASH_HF),
        WeightEntry("dino_vit_small8", "dino_vit_small8", "DINO ViT-S/8 self-supervised (ECA's correspondence)",
                    "vit_small_patch8_224.dino",
                    "https://dl.fbaipublicfiles.com/dino/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth",
                    "dino_deitsmall8_pretrain.pth", None, "the DINO release names no hash"),
        WeightEntry("mit_b1", "mit_b1", "SegFormer MiT-B1 ImageNet-1k (AFA, ECA)", None,
                    "SegFormer's release (github.com/NVlabs/SegFormer, 'ImageNet-1K pretrained weights': mit_b1.pth)",
                    "mit_b1.pth", None, "SegFormer publishes its weights on Google Drive/OneDrive without a hash"),
        WeightEntry("resnet38", "resnet38", "ResNet-38 (model A1) ImageNet, converted from MXNet (PSA, MCTformer DeepLab-V1)",
                    None, "PSA's ilsvrc-cls_rna-a1_cls1000_ep-0001.params converted to a state dict "
                    "(github.com/jiwoon-ahn/psa README)", None, None,
                    "a local conversion: no published hash of the converted file"),
        WeightEntry("resnet50", "resnet50", "ResNet-50 torchvision ImageNet-1k (IRN)",
                    "resnet50.tv_in1k", _hf("resnet50.tv_in1k"), None, None,
                    NO_HASH_HF + " (torchvision's resnet50-0676ba61.pth is another file)"),
        WeightEntry("resnet101", "resnet101", "ResNet-101 torchvision ImageNet-1k (DeepLab-V2)",
                    "resnet101.tv_in1k", _hf("resnet101.tv_in1k"), None, None,
                    NO_HASH_HF + " (torchvision's resnet101-63fe2227.pth is another file)"),
    )
}
