"""PyTorch: ``torch.nn.LSTM`` / ``LSTMCell`` modules and their state dicts.

lstmx already uses PyTorch's parameter names, shapes and gate order (i, f, g, o), so the
conversion only moves arrays between tensors and NumPy. torch is imported only to build a
module (``to_torch``) or when a torch object is passed in.
"""
from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Mapping

import numpy as np

from lstmx._interop_gates import (build_cell, build_lstm, layer_params, optional_import,
                                  resolve_dtype)

__all__ = ["from_torch", "to_torch"]

_LAYER_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr|weight_c[ifo]"
                        r"|layer_norm_(?:ih|hh|c)_(?:weight|bias))_l(\d+)(_reverse)?$")
_CELL_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_ci", "weight_cf",
              "weight_co", *(f"layer_norm_{part}_{kind}" for part in ("ih", "hh", "c")
                             for kind in ("weight", "bias")))


def _to_numpy(name, value):
    if hasattr(value, "detach"):  # a torch tensor; half precisions have no NumPy twin
        value = value.detach().cpu()
        if value.dtype not in (sys.modules["torch"].float32, sys.modules["torch"].float64):
            value = value.float()
        value = value.numpy()
    value = np.asarray(value)
    if value.dtype.kind != "f":
        raise TypeError(f"state_dict[{name!r}] must hold floats; got dtype {value.dtype}")
    return value


def from_torch(module, *, batch_first=None, output_activation="tanh", dtype=None, prefix=None,
               dropout=None):
    """An lstmx model with the parameters of a PyTorch LSTM, or of any state dict.

    Parameters
    ----------
    module : torch.nn.LSTM, torch.nn.LSTMCell or mapping
        A module, or a state dict (of tensors or arrays) keyed as ``torch.nn.LSTM``
        (``weight_ih_l0``, ...) or ``torch.nn.LSTMCell`` (``weight_ih``, ...). lstmx's
        peephole and layer-norm parameters (``weight_ci_l0``, ``layer_norm_ih_weight_l0``,
        ...) are recognised too. A module's ``dropout`` is carried over: lstmx's is
        PyTorch's (the outputs of every layer but the last, a fresh mask per element).
    batch_first : bool, optional
        Default: the module's, or False for a state dict (which does not record it).
    output_activation : {"tanh", "identity"}, default "tanh"
        PyTorch's LSTM uses tanh; "identity" is for state dicts of lstmx models using it.
    prefix : str, optional
        Read only the keys that start with it, without it: ``prefix="lstm."`` takes the LSTM
        out of a whole model's ``state_dict()`` (``lstm.weight_ih_l0``, ...), whatever else
        the model holds.
    dtype : float32 or float64, optional
        Default: float64 for float64 parameters, else float32.
    dropout : float, optional
        The model's ``dropout``. Default: the module's, or 0 for a state dict (which does
        not record it).

    Returns
    -------
    LSTM, or LSTMCell for an ``LSTMCell`` module or cell-style state dict
    """
    torch = sys.modules.get("torch")  # a torch object means torch is already imported
    if torch is not None and isinstance(module, torch.nn.LSTMCell):
        if batch_first is not None:
            raise TypeError("batch_first does not apply to an LSTMCell")
        module = module.state_dict()
    elif torch is not None and isinstance(module, torch.nn.LSTM):
        batch_first = module.batch_first if batch_first is None else batch_first
        dropout = module.dropout if dropout is None else dropout
        module = module.state_dict()
    elif not isinstance(module, Mapping):
        raise TypeError(f"module must be a torch.nn.LSTM, torch.nn.LSTMCell or a state dict; "
                        f"got {type(module).__name__}")
    if prefix is not None:
        module = _strip_prefix(module, prefix)
    params = {name: _to_numpy(name, value) for name, value in module.items()}
    if not params:
        raise ValueError("the state dict is empty")
    found = next(iter(params.values())).dtype
    dtype = resolve_dtype(dtype, found)

    if "weight_ih" in params:  # a cell
        unknown = [k for k in params if k not in _CELL_KEYS]
        if unknown:
            raise ValueError(f"unexpected keys {unknown} in an LSTMCell state dict; "
                             f"expected some of {list(_CELL_KEYS)}")
        if batch_first is not None:
            raise TypeError("batch_first does not apply to an LSTMCell")
        if dropout is not None:
            raise TypeError("dropout does not apply to an LSTMCell (it acts between the "
                            "layers of an LSTM)")
        options = _shapes_to_options(params, "")
        return build_cell({k + "_l0": v for k, v in params.items()},
                          output_activation=output_activation, dtype=dtype, **options)

    layers, reverse = set(), False
    for name in params:
        match = _LAYER_KEY.match(name)
        if match is None:
            raise ValueError(f"unexpected key {name!r} in an LSTM state dict; expected names "
                             "such as 'weight_ih_l0' or 'bias_hh_l1_reverse'")
        layers.add(int(match.group(2)))
        reverse |= bool(match.group(3))
    if "weight_ih_l0" not in params:
        raise ValueError("the state dict has no 'weight_ih_l0'")
    # The layers are those the keys hold, numbered from 0 without gaps: a key such as
    # weight_ih_l999999 must not make us build a million layers to find out.
    if layers != set(range(len(layers))):
        gaps = list(itertools.islice((i for i in itertools.count() if i not in layers), 5))
        raise ValueError(f"the state dict's layers must be numbered 0 to {len(layers) - 1}; "
                         f"it has keys for layers {sorted(layers)[:10]}"
                         f"{' ...' if len(layers) > 10 else ''} but none for {gaps}")
    options = _shapes_to_options(params, "_l0")
    if "weight_hr_l0" in params:
        w_hr = params["weight_hr_l0"]
        if w_hr.ndim != 2:
            raise ValueError(f"weight_hr_l0 must be (P, H); got shape {w_hr.shape}")
        options["proj_size"] = w_hr.shape[0]
    return build_lstm(params, num_layers=len(layers), bidirectional=reverse,
                      batch_first=False if batch_first is None else batch_first,
                      output_activation=output_activation,
                      dtype=dtype, dropout=0.0 if dropout is None else dropout, **options)


def _strip_prefix(state_dict, prefix):
    """The entries of ``state_dict`` under ``prefix``, keyed without it."""
    if not isinstance(prefix, str) or not prefix:
        raise TypeError(f"prefix must be a non-empty string; got {prefix!r}")
    found = {k[len(prefix):]: v for k, v in state_dict.items()
             if isinstance(k, str) and k.startswith(prefix)}
    if not found:
        heads = sorted({k.split(".")[0] + "." for k in state_dict
                        if isinstance(k, str) and "." in k})
        raise ValueError(f"no key of the state dict starts with prefix {prefix!r}; its "
                         f"prefixes are {heads}")
    return found


def _shapes_to_options(params, s):
    """input_size, hidden_size, bias, peephole and layer_norm read from the first layer's
    parameters."""
    w_ih, w_hh = params["weight_ih" + s], params.get("weight_hh" + s)
    if w_hh is None or w_ih.ndim != 2 or w_hh.ndim != 2 or w_hh.shape[0] % 4:
        raise ValueError(f"weight_ih{s} and weight_hh{s} must be (4H, I) and (4H, H_out); "
                         f"got {w_ih.shape} and {None if w_hh is None else w_hh.shape}")
    return dict(input_size=w_ih.shape[1], hidden_size=w_hh.shape[0] // 4,
                bias="bias_ih" + s in params, peephole="weight_ci" + s in params,
                layer_norm="layer_norm_ih_weight" + s in params)


def to_torch(model):
    """A ``torch.nn.LSTM`` (or ``torch.nn.LSTMCell``) computing the same as ``model``.

    Parameters
    ----------
    model : LSTM or LSTMCell
        Without peepholes, with ``output_activation="tanh"`` and ``reverse=False``: PyTorch
        has neither peepholes, nor another output activation, nor a one-direction LSTM that
        runs backwards in time. Its ``dropout`` becomes the module's (the same maths);
        PyTorch has no recurrent dropout, zoneout, layer-normalised LSTM or cell clipping,
        so a model with any of them is refused.

    Returns
    -------
    torch.nn.LSTM or torch.nn.LSTMCell
        In the model's dtype, holding copies of its parameters.
    """
    torch = optional_import("torch", "to_torch", "install PyTorch (https://pytorch.org)")
    cfg, _ = layer_params(model)
    if cfg.peephole or cfg.output_activation != "tanh":
        raise ValueError("PyTorch's LSTM has no peepholes and computes h = o * tanh(c); "
                         f"cannot convert a model with peephole={cfg.peephole}, "
                         f"output_activation={cfg.output_activation!r}")
    lacks = _torch_lacks(cfg)
    if lacks:
        raise ValueError("PyTorch's LSTM has no recurrent dropout, zoneout, layer "
                         "normalisation or cell clipping; cannot convert a model with "
                         + ", ".join(f"{name}={value!r}" for name, value in lacks))
    if cfg.reverse:
        raise ValueError("torch.nn.LSTM has no reversed one-direction layer (only the second "
                         "direction of bidirectional=True runs backwards); cannot convert a "
                         "model with reverse=True")
    tdtype = torch.float64 if cfg.dtype == np.float64 else torch.float32
    if type(model).__name__ == "LSTMCell":
        module = torch.nn.LSTMCell(cfg.input_size, cfg.hidden_size, bias=cfg.bias,
                                   dtype=tdtype)
    else:
        module = torch.nn.LSTM(cfg.input_size, cfg.hidden_size, num_layers=cfg.num_layers,
                               bias=cfg.bias, batch_first=cfg.batch_first,
                               bidirectional=cfg.bidirectional, proj_size=cfg.proj_size,
                               dropout=cfg.dropout, dtype=tdtype)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return module


def _torch_lacks(cfg):
    """``[(option, value), ...]`` of the options of ``cfg`` that ``torch.nn.LSTM`` has no
    equivalent of (recurrent dropout would change its training; zoneout, layer norm and
    clipping its outputs too)."""
    return [(name, getattr(cfg, name)) for name, off in
            (("recurrent_dropout", 0.0), ("zoneout", (0.0, 0.0)), ("layer_norm", False),
             ("cell_clip", None)) if getattr(cfg, name) != off]
