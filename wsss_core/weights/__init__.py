"""Pretrained weights you can trust: a manifest of every ``weights.files`` key and a checker.

``python -m wsss_core.weights check`` (see :mod:`wsss_core.weights.check`); loading itself lives in
:mod:`wsss_core.models.weights` and :mod:`wsss_core.models.backbones`.
"""
