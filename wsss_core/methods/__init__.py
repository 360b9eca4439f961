"""Methods: one module per published method, each registering a ``Method`` subclass in ``METHODS``."""

from wsss_core.methods.base import METHODS, Method, build_method

__all__ = ["METHODS", "Method", "build_method"]
