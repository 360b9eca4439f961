"""Pretraining of backbones on the synthetic pool: the stand-ins for ImageNet and DINO weights.

One objective per module, registered in :data:`OBJECTIVES` (``supervised``: classification as the
ImageNet checkpoints are made; ``dino``: DINO's self-distillation as ECA's frozen guide is made). The
stage ``wsss_core.stages.pretrain_backbone`` trains one backbone with one objective in the shared
resumable loop and writes its weights in the key layout the real checkpoints have, so the methods load
them through the same verified path as real weights (``weights.files.<key>``). A recipe's ``init`` names
initialisers (:mod:`~wsss_core.pretraining.initialisation`: mimetic attention, a sin-cos position embedding)
applied to the fresh backbone before training.
"""

from wsss_core.pretraining.objectives import OBJECTIVES, PretrainingObjective

__all__ = ["OBJECTIVES", "PretrainingObjective"]
