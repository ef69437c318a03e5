"""lstmx: a Cython-accelerated LSTM for NumPy.

``LSTM`` and ``LSTMCell`` have PyTorch's parameter names and shapes; their forward and backward
passes run in typed Cython loops over BLAS with the GIL released, for float32 and float64.
``lstmx.reference`` is the same maths in plain NumPy.
"""
import pkgutil

# After a non-editable "pip install ." the checkout's lstmx/ (first on sys.path when Python
# runs from the checkout) has no compiled modules; let submodule imports fall through to the
# installed copy's directory.
__path__ = pkgutil.extend_path(__path__, __name__)
del pkgutil  # not part of the package's namespace

from lstmx._config import LSTMConfig  # noqa: E402
from lstmx._engine import LSTMCache  # noqa: E402
from lstmx.layers import LSTM, LSTMCell  # noqa: E402
from lstmx.io import load, save  # noqa: E402
from lstmx.interop import (from_keras_weights, from_onnx, from_tf1, from_torch,  # noqa: E402
                           to_keras, to_keras_weights, to_onnx, to_tf1, to_torch)
from lstmx.modules import Embedding, Linear  # noqa: E402
from lstmx.quantized import QuantizedLSTM, QuantizedLSTMCell  # noqa: E402
from lstmx import bptt, checkpoint, losses, optim  # noqa: E402
from lstmx._workspace import release_memory  # noqa: E402

__all__ = ["LSTM", "LSTMCell", "LSTMConfig", "LSTMCache", "QuantizedLSTM", "QuantizedLSTMCell",
           "Linear", "Embedding", "bptt",
           "checkpoint", "losses", "optim", "release_memory"]
__all__ += ["save", "load", "interop", "from_torch", "to_torch", "from_keras_weights",
            "to_keras_weights", "to_keras", "from_tf1", "to_tf1", "from_onnx", "to_onnx"]
__version__ = "0.1.0"
