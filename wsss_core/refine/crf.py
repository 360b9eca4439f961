"""Fully connected CRF (Krähenbühl & Koltun) through pydensecrf2, the way the WSSS codebases use it.

* ``crf_probabilities``: unary ``-log p`` from class probabilities, a Gaussian (smoothness) and a
  bilateral (appearance) kernel, mean-field for ``iterations`` steps; returns the marginals. This is
  PSA's ``crf_inference`` (also MCTformer's and CTI's ``--crf``), whose kernel settings are the
  ``CRFParams`` defaults (``refine/settings.py``): Gaussian sxy 3 / compat 3, bilateral sxy 80 / srgb 13 / compat 10, 10 steps.
* ``crf_labels``: unary from a hard labelling (each pixel's label has probability ``gt_probability``,
  the rest shared by the others), as IRN's ``crf_inference_label`` does to clean its confident fg/bg
  regions; IRN's kernels (bilateral sxy 50, srgb 5) are ``LABEL_CRF_PARAMS``, the default there.

PSA feeds unnormalised scores ``[(1 - max cam)^alpha; cams]`` to ``unary_from_softmax``; callers here
normalise to probabilities first. Scaling all labels of a pixel by one factor only adds a constant to
that pixel's unaries, which mean-field normalisation cancels, so the result is the same except where
PSA's clip at 1e-5 bites.

The image is the original RGB ``uint8`` image (no mean subtraction: see deeplab-pytorch's wrap-around
bug), made C-contiguous because pydensecrf reads its buffer directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wsss_core.refine.settings import LABEL_CRF_PARAMS, CRFParams


def _pydensecrf() -> Any:
    """The ``pydensecrf`` package (``densecrf``, ``utils``), imported on first use: the modules that only
    need the CRF's code (IRN, PSA, DeepLab inference, the benchmarks) then import on a machine without the
    compiled extension, such as a lent GPU machine with no compiler."""
    try:
        import pydensecrf.densecrf
        import pydensecrf.utils
    except ImportError as error:
        raise ImportError(
            f"the dense CRF needs pydensecrf ({error}); install it with pip install pydensecrf2 (compiles, needs g++)"
        ) from None
    return pydensecrf


def _checked_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"the CRF needs an RGB uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    if image.shape[:2] != (height, width):
        raise ValueError(f"image {image.shape[:2]} and scores {(height, width)} differ in size")
    return np.ascontiguousarray(image)


def _mean_field(image: np.ndarray, unary: np.ndarray, num_labels: int, params: CRFParams) -> np.ndarray:
    """Run the dense CRF; returns the marginals ``float32 [K, H, W]``."""
    height, width = image.shape[:2]
    model = _pydensecrf().densecrf.DenseCRF2D(width, height, num_labels)
    model.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    model.addPairwiseGaussian(sxy=params.gaussian_sxy, compat=params.gaussian_compat)
    model.addPairwiseBilateral(
        sxy=params.bilateral_sxy, srgb=params.bilateral_srgb, rgbim=image, compat=params.bilateral_compat
    )
    marginals = np.asarray(model.inference(params.iterations), dtype=np.float32)
    return marginals.reshape(num_labels, height, width)


def crf_probabilities(
    image: np.ndarray, probabilities: np.ndarray, params: CRFParams = CRFParams()
) -> np.ndarray:
    """Refine class probabilities ``[K, H, W]`` (each pixel summing to 1) on an RGB ``uint8`` image;
    returns the CRF marginals ``float32 [K, H, W]``, which sum to 1 per pixel."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if probabilities.ndim != 3 or probabilities.shape[0] < 1:
        raise ValueError(f"probabilities must be [K, H, W], got {probabilities.shape}")
    num_labels, height, width = probabilities.shape
    image = _checked_image(image, height, width)
    unary = _pydensecrf().utils.unary_from_softmax(probabilities)
    marginals = _mean_field(image, unary, num_labels, params)
    return marginals / marginals.sum(axis=0, keepdims=True)


def crf_labels(
    image: np.ndarray,
    labels: np.ndarray,
    num_labels: int,
    params: CRFParams = LABEL_CRF_PARAMS,
    gt_probability: float = 0.7,
) -> np.ndarray:
    """Refine a hard labelling ``[H, W]`` with values in ``0..num_labels-1``; returns the CRF's
    ``argmax`` as ``uint8 [H, W]`` (IRN's label CRF, every label trusted: ``zero_unsure=False``)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [H, W], got {labels.shape}")
    if not 1 <= num_labels <= 256:
        raise ValueError(f"num_labels must be in 1..256, got {num_labels}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_labels):
        raise ValueError(f"labels must be in 0..{num_labels - 1}, found {labels.min()}..{labels.max()}")
    if not 0.0 < gt_probability < 1.0:
        raise ValueError(f"gt_probability must be in (0, 1), got {gt_probability}")
    image = _checked_image(image, *labels.shape)
    if num_labels == 1:
        return np.zeros(labels.shape, dtype=np.uint8)
    unary = _pydensecrf().utils.unary_from_labels(
        labels.astype(np.int64), num_labels, gt_prob=gt_probability, zero_unsure=False
    )
    marginals = _mean_field(image, unary, num_labels, params)
    return np.argmax(marginals, axis=0).astype(np.uint8)


__all__ = ["CRFParams", "LABEL_CRF_PARAMS", "crf_labels", "crf_probabilities"]
