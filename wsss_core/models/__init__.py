"""Networks: backbones through timm, the multi-token ViT, and the weight-file catalog."""
