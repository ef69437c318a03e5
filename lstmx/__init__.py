"""lstmx: a Cython-accelerated LSTM for NumPy.

``LSTM`` and ``LSTMCell`` have PyTorch's parameter names and shapes; their forward and backward
passes run in typed Cython loops over BLAS with the GIL released, for float32 and float64.
``lstmx.reference`` is the same maths in plain NumPy.
"""
from lstmx._config import LSTMConfig
from lstmx._engine import LSTMCache
from lstmx.layers import LSTM, LSTMCell

__all__ = ["LSTM", "LSTMCell", "LSTMConfig", "LSTMCache"]
__version__ = "0.1.0"
