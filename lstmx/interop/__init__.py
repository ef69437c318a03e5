"""Weights to and from PyTorch, Keras 3, TensorFlow 1 and ONNX.

The conversions, with their gate-order tables, are described in ``docs/interop.md``. The
frameworks are optional: each is imported only by the functions that need it.
"""
from lstmx.interop._onnx import from_onnx, to_onnx

__all__ = ["to_onnx", "from_onnx"]
