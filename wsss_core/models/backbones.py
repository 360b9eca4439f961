"""Backbones by name: the papers' networks through timm, plus tiny from-scratch variants.

``create_backbone(name, weights, **overrides)`` returns a timm model without its classifier
(``num_classes=0``). Pretrained weights come from a local file (``weights.path``) passed to timm as
``pretrained_cfg_overlay=dict(file=...)``, so timm's own key remapping and position-embedding resampling
run and nothing is downloaded; ``weights.use_hub`` lets timm download instead; ``weights=None`` is random
initialisation.

timm loads a checkpoint non-strictly once the classifier is dropped, so a wrong file would silently
leave a random network (the failure behind ToCo issue #14). Every file load is therefore *verified*:
each backbone tensor is compared with the (timm-filtered) file; a tensor absent from the file or left
at its random value raises ``BackboneWeightsError`` naming the file and the keys, and file keys the
model does not use are logged.

Other modules of ``wsss_core.models`` (e.g. ``mit.py``) register more backbones into ``BACKBONES``; the
registry is the only coupling between them.
"""

from __future__ import annotations

import logging
import pickle
import struct
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from wsss_core.errors import InputError, summarize
from wsss_core.models.weights import PretrainedWeights
from wsss_core.registry import Registry

LOG = logging.getLogger(__name__)

BackboneFactory = Callable[..., nn.Module]
BACKBONES: Registry[BackboneFactory] = Registry("backbone", package="wsss_core.models")


class BackboneWeightsError(InputError):
    """A weight file does not fit the backbone it was configured for."""


@dataclass(frozen=True)
class WeightCheck:
    """How a state dict from a file matched a model."""

    loaded: list[str] = field(default_factory=list)  # model keys equal to the file's tensors
    resampled: list[str] = field(default_factory=list)  # present in the file with another shape
    missing: list[str] = field(default_factory=list)  # model keys absent from the file
    not_loaded: list[str] = field(default_factory=list)  # present and same shape, but values differ
    unexpected: list[str] = field(default_factory=list)  # file keys the model does not have


def create_backbone(name: str, weights: PretrainedWeights | None = None, **overrides: Any) -> nn.Module:
    """The backbone registered as ``name``; ``overrides`` go to the timm constructor (e.g.
    ``drop_path_rate=0.1``, ``img_size=448``)."""
    return BACKBONES.get(name)(weights, **overrides)


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> WeightCheck:
    """Compare every tensor of ``model`` with ``state_dict`` (which must use the model's key names)."""
    check = WeightCheck()
    own = model.state_dict()
    for key, tensor in own.items():
        if key not in state_dict:
            check.missing.append(key)
        elif tuple(state_dict[key].shape) != tuple(tensor.shape):
            check.resampled.append(key)
        elif torch.equal(state_dict[key].to(tensor.device, tensor.dtype), tensor):
            check.loaded.append(key)
        else:
            check.not_loaded.append(key)
    check.unexpected.extend(key for key in state_dict if key not in own)
    return check


def _timm_filter(model: nn.Module) -> Callable[[dict[str, Any], nn.Module], dict[str, Any]] | None:
    """The ``checkpoint_filter_fn`` timm applies when loading this model's pretrained weights."""
    return getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)


def verify_loaded(model: nn.Module, path: Path, ignore: Sequence[str] = ()) -> WeightCheck:
    """Check that ``model`` now holds the weights of ``path``; raise ``BackboneWeightsError`` if not.

    ``ignore`` lists key prefixes that a pretrained file legitimately lacks (e.g. buffers recomputed
    at construction). Resampled tensors (position embeddings at another image size) count as loaded.
    """
    state_dict = timm.models.load_state_dict(str(path), use_ema=False)
    filter_fn = _timm_filter(model)
    if filter_fn is not None:
        state_dict = filter_fn(dict(state_dict), model)
    check = check_state_dict(model, state_dict)
    failed = [key for key in check.missing + check.not_loaded if not key.startswith(tuple(ignore))]
    if failed:
        shown = ", ".join(failed[:8]) + (f" ... ({len(failed)} in all)" if len(failed) > 8 else "")
        raise BackboneWeightsError(
            f"weight file '{path}' did not load into {type(model).__name__}: {len(failed)} of "
            f"{len(check.loaded) + len(check.resampled) + len(failed)} tensors are missing or left at "
            f"random init ({shown}); point weights.files.<key> at the checkpoint of this backbone"
        )
    if check.unexpected:
        LOG.info("%s: %d file keys unused by the backbone (e.g. %s)", path, len(check.unexpected),
                 ", ".join(check.unexpected[:4]))
    LOG.info("%s: %d tensors loaded, %d resampled", path, len(check.loaded), len(check.resampled))
    return check


def create_timm_backbone(
    timm_name: str,
    weights: PretrainedWeights | None,
    ignore_keys: Sequence[str] = (),
    **kwargs: Any,
) -> nn.Module:
    """``timm.create_model(timm_name, num_classes=0, **kwargs)`` with weights from a local file (verified),
    from the hub, or random init."""
    kwargs.setdefault("num_classes", 0)
    if weights is None:
        return timm.create_model(timm_name, pretrained=False, **kwargs)
    if weights.path is None:
        if not weights.use_hub:
            raise BackboneWeightsError(
                f"no weight file for '{weights.key}': set weights.files.{weights.key} or "
                "weights.use_hub: true"
            )
        return timm.create_model(timm_name, pretrained=True, **kwargs)
    path = Path(weights.path)
    # Tags with custom_load=True read JAX .npz files; any other file goes through the state-dict path.
    overlay = {"file": str(path), "custom_load": path.suffix == ".npz"}
    try:
        model = timm.create_model(timm_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    except (RuntimeError, KeyError, ValueError, EOFError, pickle.UnpicklingError, struct.error) as error:
        # torch.load's errors for an empty, truncated or foreign file (an interrupted download, an HTML
        # error page) are bare (``KeyError: 101``, ``EOFError``): name the file, the key and the type
        raise BackboneWeightsError(
            f"weight file '{path}' (weights.files.{weights.key}) cannot be loaded into {timm_name}: "
            f"{summarize(error)}"
        ) from None
    if not overlay["custom_load"]:
        verify_loaded(model, path, ignore_keys)
    return model


def set_last_stage_stride_one(resnet: nn.Module) -> None:
    """Strides (2, 2, 2, 1) on a timm ResNet: every stride-2 convolution of the first block of ``layer4``
    (the 3×3 and the downsample shortcut) gets stride 1, so the output stride is 16 with no dilation
    (IRN's ``resnet50(strides=(2, 2, 2, 1))``, used by its CAM network and IRNet)."""
    for module in resnet.layer4[0].modules():
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            module.stride = (1, 1)


def _register_timm(name: str, timm_name: str, ignore_keys: Sequence[str] = (), **defaults: Any) -> None:
    """Register ``name`` as ``timm_name`` with default constructor arguments."""

    def factory(weights: PretrainedWeights | None = None, **overrides: Any) -> nn.Module:
        return create_timm_backbone(timm_name, weights, ignore_keys, **{**defaults, **overrides})

    factory.__name__ = name
    factory.__doc__ = f"timm ``{timm_name}`` without classifier" + (f", {defaults}" if defaults else "")
    BACKBONES.register(name)(factory)


# The papers' backbones.
_register_timm("deit_small", "deit_small_patch16_224")  # MCTformer, CTI, ...
_register_timm("deit_base", "deit_base_patch16_224")
_register_timm("vit_base", "vit_base_patch16_224")  # ToCo, AFA-ViT
_register_timm("vit_base_384", "vit_base_patch16_384")  # ViT-PCM
_register_timm("swin_tiny", "swin_tiny_patch4_window7_224")
_register_timm("dino_vit_small8", "vit_small_patch8_224.dino")
_register_timm("resnet50", "resnet50")
_register_timm("resnet101", "resnet101")

# Small from-scratch variants: the synthetic default and the tests (train in minutes on 2 CPU cores).
_register_timm(
    "vit_synth", "vit_small_patch16_224",
    patch_size=8, embed_dim=96, depth=4, num_heads=3, mlp_ratio=2.0, img_size=96,
)
_register_timm(
    "swin_synth", "swin_tiny_patch4_window7_224",
    embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), window_size=3, img_size=96,
)
# One narrow ResNet for every CNN role of the synthetic presets (IRN, the `cam` baseline, DeepLab-V2's
# backbone: stage.backbone resnet18 with the same overrides), so one pretrained file serves them all.
_register_timm("resnet_synth", "resnet18", layers=(1, 1, 1, 1), channels=(32, 64, 128, 256), stem_width=32)
