"""Weights to and from PyTorch, Keras 3, TensorFlow 1 and ONNX.

The conversions, with their gate-order tables, are described in ``docs/interop.md``. The
frameworks are optional: each is imported only by the functions that need it (TensorFlow
never, Keras only by ``to_keras``: the other Keras and TF1 functions exchange NumPy arrays).
"""
from lstmx._interop_keras import from_keras_weights, to_keras, to_keras_weights
from lstmx._interop_onnx import to_onnx
from lstmx._interop_onnx_import import from_onnx
from lstmx._interop_tf1 import from_tf1, to_tf1
from lstmx._interop_torch import from_torch, to_torch

__all__ = ["from_torch", "to_torch", "from_keras_weights", "to_keras_weights", "to_keras",
           "from_tf1", "to_tf1", "from_onnx", "to_onnx"]
