"""ONNX export: an lstmx model as a graph of ONNX ``LSTM`` operators.

Each layer becomes one ``LSTM`` node (``direction="bidirectional"`` for two directions,
``"reverse"`` for a ``reverse=True`` model). Per direction ``d`` the operator holds ``W``
(D, 4H, I), ``R`` (D, 4H, H), ``B`` (D, 8H) = [input biases, recurrent biases] and ``P``
(D, 3H) = [p_i, p_o, p_f], gates in the order i, o, f, c; its equations are those of
``docs/equations.md`` with ``h = o * h_act(c)``. ``from_onnx`` (``_interop_onnx_import``)
reads this layout back, and the options recorded under ``METADATA_KEY`` (``batch_first``,
``cell``, and the dropouts, which training uses and the graph's inference does not).
"""
from __future__ import annotations

import json

import numpy as np

from lstmx._interop_gates import LSTMX, ONNX, layer_params, optional_import, reorder
from lstmx._interop_onnx_quantized import quantized_to_onnx
from lstmx.quantized import QuantizedLSTM, QuantizedLSTMCell

__all__ = ["to_onnx"]

DEFAULT_OPSET = 21
MIN_OPSET = 14
METADATA_KEY = "lstmx.config"

# The ONNX activations (f, g, h) of each direction: the gates, the candidate and the output.
_ACTIVATIONS = {"tanh": ("Sigmoid", "Tanh", "Tanh"),
                "identity": ("Sigmoid", "Tanh", "Affine")}  # Affine(x) = 1 * x + 0


def _onnx():
    return optional_import("onnx", "ONNX export and import",
                           "install it with `pip install onnx` or `pip install lstmx[interop]`")


def to_onnx(model, *, initial_state=False, sequence_lens=False, ir_version=13, opset=None):
    """Export ``model`` as an ONNX graph of ``LSTM`` operators.

    Parameters
    ----------
    model : LSTM or LSTMCell, or a list [Embedding, LSTM, Linear] (the LSTM may be an int8
        QuantizedLSTM)
        Any configuration without projection (``proj_size=0``): ONNX's LSTM has no
        projection; nor zoneout, layer normalisation or cell clipping (its ``clip`` bounds
        the gates' pre-activations, not the cell state). A model's dropouts do not change
        its inference, which is what the graph computes; they are recorded in its metadata.
        An ``LSTMCell`` exports as a one-layer LSTM (feed T = 1 for one step).
        An int8 ``QuantizedLSTM`` or ``QuantizedLSTMCell`` exports as onnxruntime's
        ``com.microsoft`` ``DynamicQuantizeLSTM`` holding its int8 weights and scales, in the
        same graph otherwise (``lstmx/_interop_onnx_quantized.py``; bfloat16 models are
        refused).
        A list is a whole model, one graph: an LSTM with a ``Linear`` readout of its every
        step and/or an ``Embedding`` of its input tokens. The input ``X`` is then
        ``tokens`` (int64, (T, B)) and the output ``Y`` is ``output`` (T, B, O), the
        readout of lstmx's ``y`` ((B, T, .) with ``batch_first``).
    initial_state : bool, default False
        Add the graph inputs ``initial_h`` and ``initial_c``; without them the state starts
        at zero.
    sequence_lens : bool, default False
        Add the graph input ``sequence_lens`` (int32, (B,)): the valid steps of each sequence,
        as ``lengths`` of ``LSTM.__call__``.
    ir_version : int, default 13
        The model's IR version (onnxruntime 1.31 loads 13 or lower).
    opset : int, optional
        The ONNX opset, at least 14; default 21.

    Returns
    -------
    onnx.ModelProto
        Inputs ``X`` (T, B, I) and, if asked for, ``initial_h``, ``initial_c``
        (L*D, B, H) and ``sequence_lens`` (B,); outputs ``Y`` (T, D, B, H) (the last layer's
        output, as the ONNX LSTM operator gives it), ``Y_h`` and ``Y_c`` (L*D, B, H) (as
        ``h_n`` and ``c_n``). With ``batch_first`` every tensor is laid out as the operator's
        ``layout=1``: ``X`` (B, T, I), ``Y`` (B, T, D, H), states (B, L*D, H).
        ``Y.transpose(0, 2, 1, 3).reshape(T, B, D*H)`` is lstmx's ``y``.

    Raises
    ------
    ValueError
        For a model with a projection, zoneout, layer normalisation or cell clipping, or a
        bfloat16 ``QuantizedLSTM``.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    if isinstance(model, (QuantizedLSTM, QuantizedLSTMCell)):
        return quantized_to_onnx(model, to_onnx, initial_state=initial_state,
                                 sequence_lens=sequence_lens, ir_version=ir_version,
                                 opset=opset)

    if isinstance(model, (list, tuple)):
        from lstmx._interop_onnx_model import sequential_to_onnx
        return sequential_to_onnx(model, to_onnx, initial_state=initial_state,
                                  sequence_lens=sequence_lens, ir_version=ir_version,
                                  opset=opset)
    cfg, params = layer_params(model)
    if cfg.proj_size:
        raise ValueError(f"ONNX's LSTM operator has no projection; cannot export a "
                                  f"model with proj_size={cfg.proj_size}")
    lacks = [f"{name}={getattr(cfg, name)!r}" for name, off in
             (("zoneout", (0.0, 0.0)), ("layer_norm", False), ("cell_clip", None))
             if getattr(cfg, name) != off]
    if lacks:
        raise ValueError("ONNX's LSTM operator has no zoneout, layer normalisation or cell "
                         "clipping (its clip attribute bounds the gates' pre-activations, not "
                         f"c_t); cannot export a model with {', '.join(lacks)}")
    opset = DEFAULT_OPSET if opset is None else opset
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"opset must be an integer >= {MIN_OPSET}; got {opset!r}")
    if not isinstance(ir_version, int) or ir_version < 7:
        raise ValueError(f"ir_version must be an integer >= 7; got {ir_version!r}")

    elem = TensorProto.FLOAT if cfg.dtype == np.float32 else TensorProto.DOUBLE
    L, D, H = cfg.num_layers, cfg.num_directions, cfg.hidden_size
    LD = L * D
    nodes, inits = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op, inputs, outputs, **attrs):
        nodes.append(helper.make_node(op, inputs, outputs, name=outputs[0], **attrs))
        return outputs[0]

    seq, batch = "seq_len", "batch"
    if cfg.batch_first:  # outside: ONNX's layout=1; inside: layout 0, which all runtimes run
        x_shape, state_shape = [batch, seq, cfg.input_size], [batch, LD, H]
        y_shape = [batch, seq, D, H]
    else:
        x_shape, state_shape = [seq, batch, cfg.input_size], [LD, batch, H]
        y_shape = [seq, D, batch, H]
    graph_inputs = [helper.make_tensor_value_info("X", elem, x_shape)]
    x = node("Transpose", ["X"], ["X_tbi"], perm=[1, 0, 2]) if cfg.batch_first else "X"
    h0 = c0 = lens = ""
    if initial_state:
        graph_inputs += [helper.make_tensor_value_info(n, elem, state_shape)
                         for n in ("initial_h", "initial_c")]
        h0, c0 = "initial_h", "initial_c"
        if cfg.batch_first:
            h0 = node("Transpose", [h0], ["initial_h_ldbh"], perm=[1, 0, 2])
            c0 = node("Transpose", [c0], ["initial_c_ldbh"], perm=[1, 0, 2])
    if sequence_lens:
        graph_inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32,
                                                          [batch]))
        lens = "sequence_lens"

    activations = list(_ACTIVATIONS[cfg.output_activation]) * D
    extra = {}
    if cfg.output_activation == "identity":
        extra = dict(activation_alpha=[1.0] * D, activation_beta=[0.0] * D)
    hs, cs = [], []
    for k in range(L):
        W, R, B, P = _layer_to_onnx(cfg, params, k)
        inputs = [x, const(f"W_l{k}", W), const(f"R_l{k}", R),
                  const(f"B_l{k}", B) if B is not None else "", lens]
        if initial_state:
            if L == 1:
                inputs += [h0, c0]
            else:
                starts, ends = const(f"start_l{k}", [k * D]), const(f"end_l{k}", [(k + 1) * D])
                axes = const(f"axes_l{k}", [0]) if k == 0 else "axes_l0"
                inputs += [node("Slice", [s, starts, ends, axes], [f"{s}_l{k}"])
                           for s in (h0, c0)]
        else:
            inputs += ["", ""]
        if P is not None:
            inputs.append(const(f"P_l{k}", P))
        last = k == L - 1
        y = "Y" if last and not cfg.batch_first else f"Y_l{k}"
        h_n = "Y_h" if L == 1 and not cfg.batch_first else f"Y_h_l{k}"
        c_n = "Y_c" if L == 1 and not cfg.batch_first else f"Y_c_l{k}"
        while inputs[-1] == "":  # trailing optional inputs are left out
            inputs.pop()
        direction = "bidirectional" if D == 2 else "reverse" if cfg.reverse else "forward"
        node("LSTM", inputs, [y, h_n, c_n], hidden_size=H, direction=direction,
             activations=activations, **extra)
        hs.append(h_n)
        cs.append(c_n)
        if not last:  # (T, D, B, H) -> (T, B, D*H), the next layer's input
            x = node("Transpose", [y], [f"Y_tbdh_l{k}"], perm=[0, 2, 1, 3])
            x = node("Reshape", [x, const(f"shape_l{k}", np.array([0, 0, -1], np.int64))],
                     [f"X_l{k + 1}"])
    h_n, c_n = hs[0], cs[0]
    if L > 1:
        h_n = node("Concat", hs, ["Y_h" if not cfg.batch_first else "Y_h_ldbh"], axis=0)
        c_n = node("Concat", cs, ["Y_c" if not cfg.batch_first else "Y_c_ldbh"], axis=0)
    if cfg.batch_first:
        node("Transpose", [y], ["Y"], perm=[2, 0, 1, 3])
        node("Transpose", [h_n], ["Y_h"], perm=[1, 0, 2])
        node("Transpose", [c_n], ["Y_c"], perm=[1, 0, 2])
    outputs = [helper.make_tensor_value_info("Y", elem, y_shape),
               helper.make_tensor_value_info("Y_h", elem, state_shape),
               helper.make_tensor_value_info("Y_c", elem, state_shape)]
    graph = helper.make_graph(nodes, "lstmx", graph_inputs, outputs, inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                   producer_name="lstmx")
    onnx_model.ir_version = ir_version
    saved = {"batch_first": cfg.batch_first, "cell": type(model).__name__ == "LSTMCell"}
    saved.update({name: getattr(cfg, name) for name in ("dropout", "recurrent_dropout")
                  if getattr(cfg, name)})  # training options, kept for from_onnx
    helper.set_model_props(onnx_model, {METADATA_KEY: json.dumps(saved)})
    onnx.checker.check_model(onnx_model)
    return onnx_model


def _layer_to_onnx(cfg, params, k):
    """W, R, B (or None), P (or None) of layer ``k`` in the ONNX layout."""
    D, H = cfg.num_directions, cfg.hidden_size
    sfx = [cfg.suffix(k, d) for d in range(D)]
    W = np.stack([reorder(params["weight_ih" + s], LSTMX, ONNX) for s in sfx])
    R = np.stack([reorder(params["weight_hh" + s], LSTMX, ONNX) for s in sfx])
    B = P = None
    if cfg.bias:
        B = np.stack([np.concatenate([reorder(params["bias_ih" + s], LSTMX, ONNX),
                                      reorder(params["bias_hh" + s], LSTMX, ONNX)])
                      for s in sfx])
    if cfg.peephole:
        P = np.stack([np.concatenate([params[f"weight_c{g}" + s] for g in "iof"])
                      for s in sfx])
    assert W.shape[:2] == (D, 4 * H)
    return W, R, B, P
