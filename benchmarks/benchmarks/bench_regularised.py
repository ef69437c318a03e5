"""The cost of dropout, recurrent dropout, zoneout and layer norm against the plain LSTM.

Parameterised as ``python -m lstmx bench --regularised``: the configurations M, L and their
two-layer versions (M-bi2, L2, where dropout acts), float32, and the implementation, from
``lstmx._bench_impls`` (``lstmx`` is the plain LSTM; ``torch-layernorm`` is torch's
layer-norm LSTM written with ``torch.nn.functional.layer_norm`` in a Python loop). The
targets are in ``benchmarks/targets.json``: each option's forward+backward time over the
plain one's, and torch's composition over lstmx's layer norm. Dropout cannot run on a
one-layer configuration (skipped).
"""
from .bench_lstm import build
from .common import Benchmark

CONFIGS = ["M", "L", "M-bi2", "L2"]
IMPLS = ["lstmx", "lstmx-layernorm", "lstmx-dropout", "lstmx-recurrent-dropout",
         "lstmx-zoneout", "torch-layernorm"]


class RegularisedTraining(Benchmark):
    """A training step (forward keeping the cache, then backward of sum(y * dy)), fresh
    masks drawn at each."""

    params = [CONFIGS, ["float32"], IMPLS]
    param_names = ["config", "dtype", "impl"]

    def setup(self, config, dtype, impl):
        self.impl = build(config, dtype, impl, training=True)

    def time_train(self, config, dtype, impl):
        self.impl.train()


class RegularisedForward(Benchmark):
    """Inference: dropouts do nothing, zoneout is its expectation."""

    params = [CONFIGS, ["float32"], IMPLS]
    param_names = ["config", "dtype", "impl"]

    def setup(self, config, dtype, impl):
        self.impl = build(config, dtype, impl)

    def time_forward(self, config, dtype, impl):
        with self.impl.context("forward"):
            self.impl.forward()
