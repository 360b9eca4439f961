"""The typed settings of a segmentation network (``stages.segmentation.<network>.train``, the keys that
describe the network): the only copy of their defaults. The factories of ``SEGMENTATION_NETWORKS`` read
them (from the stage mapping, or from a checkpoint's ``stage_config``), and
``wsss_core.stages.settings.SegmentationTrain`` extends this type with the training keys, so the workflow
checks them when it is parsed. pydantic only: parsing the workflow imports no network code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from wsss_core.refine.settings import CRFParams
from wsss_core.settings import PositiveFloat, PositiveInt, Settings

# deeplab-pytorch configs/voc12.yaml: 10 iterations, Gaussian (xy 1, w 3), bilateral (xy 67, rgb 3, w 4) —
# the CRF of the DeepLabs' inference when ``stages.segmentation.<network>.inference.crf`` is left out
DEEPLAB_CRF = CRFParams(
    iterations=10, gaussian_sxy=1, gaussian_compat=3, bilateral_sxy=67, bilateral_srgb=3, bilateral_compat=4
)


class SegmentationNetworkSettings(Settings):
    """``network`` and its keys. DeepLab-V2 (``deeplab_v2``): ``backbone`` (timm ResNet name, required),
    ``backbone_args`` (timm kwargs), ``weights`` (key or null), ``batch_norm``, ``normalization``,
    ``aspp_rates``. DeepLab-V1 on ResNet-38 (``deeplab_v1_resnet38``): ``weights``, ``width`` (1.0 = the
    published network), ``batch_norm``, ``frozen_stages``."""

    network: Literal["deeplab_v2", "deeplab_v1_resnet38"]
    backbone: str | None = None
    backbone_args: dict[str, Any] = {}
    weights: str | None = None
    width: PositiveFloat = 1.0
    frozen_stages: list[str] = ["conv1a"]
    batch_norm: Literal["frozen", "train"] = "frozen"  # frozen: pretrained statistics; train: random init
    normalization: Literal["imagenet", "caffe"] = "imagenet"  # caffe: converted Caffe DeepLab weights
    aspp_rates: Annotated[list[PositiveInt], Field(min_length=1)] = [6, 12, 18, 24]

    @model_validator(mode="after")
    def _backbone_for_deeplab_v2(self) -> "SegmentationNetworkSettings":
        if self.network == "deeplab_v2" and self.backbone is None:
            raise ValueError("deeplab_v2 needs backbone: name a timm ResNet, e.g. resnet101")
        return self


def network_settings(network: str, config: Mapping[str, Any] | SegmentationNetworkSettings,
                     where: str = "stage") -> SegmentationNetworkSettings:
    """The network keys of a stage mapping (its other keys, the training ones, left aside) as the type, for
    ``network``; a typed object is taken as it is."""
    if isinstance(config, SegmentationNetworkSettings):
        return config
    fields = SegmentationNetworkSettings.model_fields
    return SegmentationNetworkSettings.load(
        {**{key: value for key, value in config.items() if key in fields}, "network": network}, where)


__all__ = ["SegmentationNetworkSettings", "network_settings"]
