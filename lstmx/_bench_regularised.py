"""Bench implementations of the regularised and layer-normalised LSTMs, and torch's peer.

Each lstmx one holds the plain model's seeded weights (so dropout's inference equals the plain
output), plus the option: ``lstmx-layernorm`` (``layer_norm=True``, its gains and shifts
drawn near 1 and 0), ``lstmx-dropout`` (``dropout``, between stacked layers: only for
configurations of two or more layers), ``lstmx-recurrent-dropout`` and ``lstmx-zoneout``.
Training draws fresh masks from one seeded generator at every call, as training does, so
the time includes drawing them. ``torch-layernorm`` is what a torch user has for a
layer-normalised LSTM (torch has none, pytorch/pytorch#6760): ``torch.nn.functional.layer_norm``
and the cell's tensor ops in a Python loop over the steps, with autograd, on the same
parameters as ``lstmx-layernorm``. Its input products and their normalisation are computed
for all steps at once, the fastest way to write it.
"""
from __future__ import annotations

import contextlib

import numpy as np

from lstmx._bench_impls import LstmxImpl, UnavailableError, _Impl

__all__ = ["REGULARISED_CLASSES", "DROPOUT", "RECURRENT_DROPOUT", "ZONEOUT"]

DROPOUT = 0.25
RECURRENT_DROPOUT = 0.25
ZONEOUT = (0.15, 0.05)  # (p_c, p_h), Krueger et al.'s choice for character models
LN_EPS = 1e-5  # docs/equations.md; torch.nn.LayerNorm's default


def _layer_norm_model(config, dtype, seed, weights):
    """An lstmx layer-norm model holding ``weights`` and seeded gains/shifts near (1, 0)."""
    import lstmx

    dt = np.dtype(dtype).type
    if config.cell:
        model = lstmx.LSTMCell(config.I, config.H, layer_norm=True, dtype=dt)
    else:
        model = lstmx.LSTM(config.I, config.H, num_layers=config.num_layers,
                           bidirectional=config.bidirectional, layer_norm=True, dtype=dt)
    rng = np.random.default_rng(seed + 1)
    params = model.state_dict()
    for name, value in params.items():
        if "layer_norm" in name:
            base = 1.0 if "_weight" in name else 0.0
            params[name] = (base + 0.1 * rng.standard_normal(value.shape)).astype(dt)
    params.update(weights)
    model.load_state_dict(params)
    return model


class _LstmxOption(LstmxImpl):
    """lstmx with one option, the plain model's weights, and a seeded generator for masks."""

    options: dict = {}
    # The implementation whose forward (inference) output this one's equals, or None.
    same_output_as = "lstmx"

    def __init__(self, config, dtype, seed, threads):
        super().__init__(config, dtype, seed, threads)
        self.model = self._build(config, dtype, seed, self.model.state_dict())
        self.state_dict = self.model.state_dict()
        self.rng = np.random.default_rng(seed)

    def _build(self, config, dtype, seed, weights):
        import lstmx

        dt = np.dtype(dtype).type
        if config.cell:
            model = lstmx.LSTMCell(config.I, config.H, dtype=dt, **self.options)
        else:
            model = lstmx.LSTM(config.I, config.H, num_layers=config.num_layers,
                               bidirectional=config.bidirectional, dtype=dt, **self.options)
        model.load_state_dict(weights)
        return model

    def forward_train(self):
        if self.config.cell:
            return self.model.forward_train(self.x, self.state, rng=self.rng)[1]
        return self.model.forward_train(self.x, rng=self.rng)[2]


class LstmxLayerNormImpl(_LstmxOption):
    name = "lstmx-layernorm"
    same_output_as = None  # another model

    def _build(self, config, dtype, seed, weights):
        return _layer_norm_model(config, dtype, seed, weights)


class LstmxDropoutImpl(_LstmxOption):
    name = "lstmx-dropout"
    options = {"dropout": DROPOUT}

    def __init__(self, config, dtype, seed, threads):
        if config.cell or config.num_layers < 2:
            raise UnavailableError(f"{self.name}: dropout acts between stacked layers; "
                                   f"{config.name} has one")
        super().__init__(config, dtype, seed, threads)


class LstmxRecurrentDropoutImpl(_LstmxOption):
    name = "lstmx-recurrent-dropout"
    options = {"recurrent_dropout": RECURRENT_DROPOUT}

    def __init__(self, config, dtype, seed, threads):
        if config.cell:
            raise UnavailableError(f"{self.name}: a cell step has no sequence to share a "
                                   "recurrent-dropout mask over (it is LSTM's option)")
        super().__init__(config, dtype, seed, threads)


class LstmxZoneoutImpl(_LstmxOption):
    name = "lstmx-zoneout"
    options = {"zoneout": ZONEOUT}
    same_output_as = None  # inference is zoneout's expectation, another function


class TorchLayerNormImpl(_Impl):
    """The layer-norm LSTM of docs/equations.md composed of torch ops, with autograd."""

    name = "torch-layernorm"
    same_output_as = "lstmx-layernorm"

    def __init__(self, config, dtype, seed, threads):
        try:
            import torch
        except ImportError as err:
            raise UnavailableError(f"torch does not import: {err}") from err
        super().__init__(config, dtype, seed, threads)
        self.torch = torch
        torch.set_num_threads(threads)
        self.model = _layer_norm_model(config, dtype, seed, self.model.state_dict())
        self.state_dict = self.model.state_dict()
        self.params = {k: torch.from_numpy(v.copy()).requires_grad_(True)
                       for k, v in self.state_dict.items()}
        x = self.x[None] if config.cell else self.x  # the cell: one step
        self.x_t = torch.from_numpy(x)
        self.x_train = self.x_t.clone().requires_grad_(True)
        self.dy_t = torch.from_numpy(self.dy)

    def context(self, mode):
        return self.torch.no_grad() if mode == "forward" else contextlib.nullcontext()

    def _direction(self, x, s, reverse):
        """One layer's direction over x (T, B, I_k): its outputs (T, B, H)."""
        torch, p, H = self.torch, self.params, self.config.H
        ln = torch.nn.functional.layer_norm
        W, U = p["weight_ih" + s], p["weight_hh" + s]
        # z = LN(x W^T) + LN(h U^T) + b_ih + b_hh; the first term for all steps at once.
        zx = ln(x @ W.T, (4 * H,), p["layer_norm_ih_weight" + s], p["layer_norm_ih_bias" + s],
                LN_EPS) + p["bias_ih" + s] + p["bias_hh" + s]
        B = x.shape[1]
        h = c = torch.zeros((B, H), dtype=x.dtype)
        ys = [None] * x.shape[0]
        for t in (range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])):
            z = zx[t] + ln(h @ U.T, (4 * H,), p["layer_norm_hh_weight" + s],
                           p["layer_norm_hh_bias" + s], LN_EPS)
            i, f, g, o = z.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(ln(c, (H,), p["layer_norm_c_weight" + s],
                                                 p["layer_norm_c_bias" + s], LN_EPS))
            ys[t] = h
        return torch.stack(ys)

    def _call(self, x):
        cfg = self.config
        for k in range(cfg.num_layers):
            outs = []
            for d in range(cfg.directions):
                s = ("" if cfg.cell else f"_l{k}") + ("_reverse" if d else "")
                outs.append(self._direction(x, s, reverse=d == 1))
            x = outs[0] if len(outs) == 1 else self.torch.cat(outs, dim=2)
        return x[0] if cfg.cell else x

    def forward(self):
        return self._call(self.x_t)

    def forward_train(self):
        return self._call(self.x_train)

    def _backward(self, y, retain_graph=False):
        for t in (*self.params.values(), self.x_train):
            t.grad = None  # a training step starts from fresh gradients
        (y * self.dy_t).sum().backward(retain_graph=retain_graph)

    def backward(self):
        return self._backward(self._cache, retain_graph=True)

    def output(self):
        with self.torch.no_grad():
            return self.forward().numpy().copy()

    def gradients(self):
        self.train()
        grads = {k: p.grad.numpy().copy() for k, p in self.params.items()}
        x = self.x_train.grad.numpy()
        return {"x": x[0].copy() if self.config.cell else x.copy(), **grads}


REGULARISED_CLASSES = {cls.name: cls for cls in (
    LstmxLayerNormImpl, LstmxDropoutImpl, LstmxRecurrentDropoutImpl, LstmxZoneoutImpl,
    TorchLayerNormImpl)}
