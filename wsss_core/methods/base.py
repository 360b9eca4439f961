"""The interface every WSSS method implements.

A method is one module in ``wsss_core/methods/`` that defines a ``Method`` subclass and registers it:

    @METHODS.register("mctformer")
    class MCTformerV2(Method): ...

The stages only ever talk to this interface:

* ``train_method`` builds the network (``build_model``), turns each decoded image into the tensors
  a step needs (``training_sample``, run inside DataLoader workers), and calls ``training_step`` in the
  shared resumable loop (``wsss_core.training.loop``) with the optimiser from ``build_optimizer``.
* ``export_seeds`` calls ``infer_seeds`` per image and writes the result to the HDF5 seed store.
* For end-to-end (single-stage) methods, ``infer_segmentation`` calls ``segment`` to get the method's own
  decoder output (multi-scale, flip), on which the shared dense CRF runs.

Everything a method must remember across steps (CTI's token memory, ECA's prototypes, an EMA teacher)
lives in the model as sub-modules or buffers, so the ordinary checkpoint holds it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from wsss_core.errors import ConfigError
from wsss_core.io.seed_maps import SeedMaps
from wsss_core.models.weights import WeightsCatalog
from wsss_core.registry import Registry
from wsss_core.settings import Settings
from wsss_core.training.progress import TrainingProgress

METHODS: Registry[type["Method"]] = Registry("method", package="wsss_core.methods")

# Re-exported for the methods: the records they produce and receive live in the layers below them.
__all__ = ["METHODS", "Method", "build_method", "method_from_config"]


class Method(abc.ABC):
    """One published method: its network, its training losses and its CAM inference."""

    name: ClassVar[str]
    # True for single-stage methods that train their own segmentation decoder (MCC, ToCo, AFA, ECA).
    end_to_end: ClassVar[bool] = False
    # How ``infer_seeds`` normalises each map: "minmax" or "max"; recorded in the seed store so that
    # refinement (IRN, PSA, CRF) converts seeds from any method the same documented way.
    seed_normalization: ClassVar[str] = "minmax"
    # True when ``infer_seeds`` exports a background map of its own (key 0: SWTformer-V2, ViT-PCM): what
    # IRN's ``background: seeds`` (SIPE's reading) needs; the workflow checks it when it is parsed.
    seed_background: ClassVar[bool] = False
    # The rule of ``infer_pseudo_labels`` ("par": ToCo, MCC, AFA; "carm": ECA), or None for methods
    # whose pseudo-masks come from refinement only. Exported as ``refine: own`` (stages.export_pseudo_labels).
    pseudo_labels: ClassVar[str | None] = None
    # The typed settings of ``methods.<name>.params`` (``wsss_core.settings.Settings``), declared next to the
    # method's code: checked when the workflow is parsed and when the method is built (``self.settings``).
    settings_type: ClassVar[type[Settings] | None] = None

    def __init__(self, config: Mapping[str, Any], num_classes: int) -> None:
        self.config = dict(config)
        self.num_classes = num_classes
        self.settings = self.load_settings(self.config)

    @classmethod
    def load_settings(cls, config: Mapping[str, Any], where: str = "method",
                      origin: Callable[[Sequence[Any]], str | None] | None = None) -> Any:
        """``config`` (a resolved method block; its ``name`` aside) checked against :attr:`settings_type`:
        one ConfigError line naming the key (``where``, or the path ``origin`` gives) otherwise."""
        if cls.settings_type is None:
            return None
        return cls.settings_type.load({key: value for key, value in config.items() if key != "name"}, where, origin)

    # ----------------------------------------------------------------------------------- network
    @abc.abstractmethod
    def build_model(self, weights: WeightsCatalog) -> nn.Module:
        """The network, with pretrained weights taken from ``weights`` (local files named in config)."""

    # -------------------------------------------------------------------------------------- data
    @abc.abstractmethod
    def training_sample(
        self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator
    ) -> dict[str, Any]:
        """Tensors of one training example from an RGB ``uint8 [H, W, 3]`` image and its multi-hot
        ``float32 [C]`` labels; randomness only from ``rng`` (reproducible whatever the workers)."""

    # ------------------------------------------------------------------------------ optimisation
    def total_steps(self, steps_per_epoch: int) -> int:
        """Length of training: ``train.epochs`` × steps per epoch, or ``train.iterations``."""
        train = self.settings.train
        iterations = getattr(train, "iterations", None)
        if iterations:
            return int(iterations)
        return int(train.epochs) * steps_per_epoch

    @abc.abstractmethod
    def build_optimizer(
        self, model: nn.Module, steps_per_epoch: int
    ) -> tuple[torch.optim.Optimizer, Any]:
        """Optimiser and a timm-style scheduler (``step(epoch)``, ``step_update(num_updates)``)."""

    @abc.abstractmethod
    def training_step(
        self, model: nn.Module, batch: Mapping[str, Any], progress: TrainingProgress
    ) -> dict[str, torch.Tensor]:
        """Losses of one batch; ``"loss"`` is the total that is back-propagated, the others are logged."""

    # --------------------------------------------------------------------------------- inference
    @abc.abstractmethod
    def infer_seeds(self, model: nn.Module, image: np.ndarray, labels: np.ndarray) -> SeedMaps:
        """CAM seeds of one RGB ``uint8`` image for its present classes, as the paper exports them."""

    @abc.abstractmethod
    def class_scores(self, model: nn.Module, image: np.ndarray) -> dict[str, np.ndarray]:
        """Image-level scores ``float32 [C]`` of one RGB ``uint8`` image, one entry per classification
        head that the losses train (MCTformer: ``token`` and ``patch``), single scale, no flip. Their mAP
        on the score split (stage ``evaluate_classifier``) says whether training learned the labels."""

    def infer_pseudo_labels(self, model: nn.Module, image: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The method's own pseudo-mask ``uint8 [H, W]`` (0 background, 1..C) of one image: the label its
        segmentation decoder learns from, with the evaluation rule's single background threshold."""
        raise TypeError(
            f"method '{self.name}' makes no pseudo-labels of its own; set pipeline.refine to crf, irn or psa"
        )

    def segment(self, model: nn.Module, image: np.ndarray) -> np.ndarray:
        """Class probabilities ``float32 [C+1, H, W]`` from the method's own decoder (end-to-end only)."""
        raise TypeError(f"method '{self.name}' has no segmentation decoder; it feeds refinement + DeepLab")


def build_method(name: str, config: Mapping[str, Any], num_classes: int) -> Method:
    """Instantiate the registered method ``name``."""
    return METHODS.get(name)(config, num_classes)


def method_from_config(config: Mapping[str, Any], num_classes: int) -> Method:
    """The method named by a stage configuration's ``method.name``; a missing or unknown name is a
    ConfigError naming the key."""
    method_config = config.get("method")
    if not isinstance(method_config, Mapping) or "name" not in method_config:
        raise ConfigError("the stage configuration has no method.name; pass the method block of config.yaml")
    try:
        return build_method(method_config["name"], method_config, num_classes)
    except KeyError as error:
        raise ConfigError(f"method.name: {error.args[0]}") from None
