"""ONNX export of an int8 QuantizedLSTM as onnxruntime's com.microsoft DynamicQuantizeLSTM.

The graph is the float export's (``_interop_onnx.to_onnx`` of a float32 model holding the
dequantised weights: same inputs, outputs, layouts and plumbing), with each ``LSTM`` node
replaced by a ``DynamicQuantizeLSTM`` node holding lstmx's int8 weights unchanged:

- ``W`` (D, I, 4H) and ``R`` (D, H, 4H): the transposes of ``weight_ih`` / ``weight_hh``
  with their gate blocks in ONNX's order i, o, f, c, each integer w in [-127, 127] stored as
  the uint8 w + 128 with ``W_zero_point`` / ``R_zero_point`` (D, 4H) all 128, so that the
  operator's w = stored - zero point is lstmx's integer exactly;
- ``W_scale`` (D, 4H) and ``R_scale`` (D, 4H) float32: lstmx's per-output-channel scales in
  the same order;
- ``B`` and ``P`` float32, as in the float export.

Why uint8 and not the operator's other weight type, int8 with zero points 0: onnxruntime
multiplies its uint8 activations by int8 weights with ``vpmaddubsw`` on CPUs without VNNI
(AVX2), whose int16 sums of two products saturate once |w| passes 64; with lstmx's full-range
weights the outputs of a small model were then off by 0.26 (0.003 with uint8 weights, which
it multiplies as int16). uint8 weights are exact on every CPU.

onnxruntime quantises the activations its own way (x and h to uint8 with one asymmetric scale
per tensor, where lstmx rounds each row to [-127, 127] with its own scale), so the two agree
only to within both activation roundings; the weights are the same numbers.

What the operator cannot express is refused: a projection (``proj_size``; the operator has
none), and bfloat16 models (no ONNX or onnxruntime LSTM operator has bfloat16 weights).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from lstmx._interop_gates import LSTMX, ONNX, reorder
from lstmx.io import scale_name
from lstmx.layers import LSTM, LSTMCell
from lstmx.quantized import QuantizedLSTMCell

__all__ = ["quantized_to_onnx", "DOMAIN"]

DOMAIN = "com.microsoft"
_WEIGHTS = ("weight_ih", "weight_hh")  # ONNX's W and R
_ZERO_POINT = 128  # of the uint8 weights: stored = w + 128


def quantized_to_onnx(q, to_onnx, **options):
    """The ``DynamicQuantizeLSTM`` graph of the int8 model ``q``; ``options`` are
    ``to_onnx``'s (``initial_state``, ``sequence_lens``, ``ir_version``, ``opset``)."""
    from onnx import checker, helper, numpy_helper

    cell = isinstance(q, QuantizedLSTMCell)
    if q.mode != "int8":
        raise ValueError(f"cannot export a {q.mode} {type(q).__name__} to ONNX: no ONNX or "
                         f"onnxruntime LSTM operator takes {q.mode} weights (only int8 "
                         "models export, as com.microsoft DynamicQuantizeLSTM); export the "
                         "float model instead")
    cfg = q.config
    if cfg.proj_size:
        raise ValueError(f"onnxruntime's DynamicQuantizeLSTM has no projection; cannot export "
                         f"a model with proj_size={cfg.proj_size}")
    state = q.state_dict()

    # The float stand-in: same options, float32, the dequantised weights (so that the float
    # export lays out the graph; its W and R are then replaced).
    if cell:
        stand_in = LSTMCell(cfg.input_size, cfg.hidden_size, bias=cfg.bias,
                            peephole=cfg.peephole, output_activation=cfg.output_activation,
                            dtype=np.float32)
    else:
        stand_in = LSTM(**{**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)},
                           "dtype": np.float32})
    floats = {}
    for name in stand_in.state_dict():
        if name[:9] in _WEIGHTS:
            w = state[name].astype(np.float32)
            floats[name] = w * state[scale_name(name)].astype(np.float32)[:, None]
        else:
            floats[name] = state[name]
    stand_in.load_state_dict(floats)
    model = to_onnx(stand_in, **options)

    D, H = cfg.num_directions, cfg.hidden_size
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    for position, node in enumerate(list(graph.node)):
        if node.op_type != "LSTM" or node.domain not in ("", "ai.onnx"):
            continue
        k = int(node.input[1].rsplit("_l", 1)[1])  # W_l{k}
        names = [""] if cell else [cfg.suffix(k, d) for d in range(D)]
        extra = []
        for key, w_name in zip(_WEIGHTS, ("W", "R")):
            ints = np.stack([reorder(state[key + s], LSTMX, ONNX).T for s in names])
            stored = (ints.astype(np.int16) + _ZERO_POINT).astype(np.uint8)
            scales = np.stack([reorder(state[scale_name(key + s)], LSTMX, ONNX)
                               for s in names]).astype(np.float32)
            old = node.input[1 if w_name == "W" else 2]
            graph.initializer.remove(inits[old])
            new = f"{w_name}_l{k}_quantized"
            graph.initializer.extend([
                numpy_helper.from_array(np.ascontiguousarray(stored), new),
                numpy_helper.from_array(scales, f"{w_name}_l{k}_scale"),
                numpy_helper.from_array(np.full((D, 4 * H), _ZERO_POINT, np.uint8),
                                        f"{w_name}_l{k}_zero_point")])
            extra.append(new)
        inputs = list(node.input) + [""] * (8 - len(node.input))
        inputs[1:3] = extra
        inputs += [f"W_l{k}_scale", f"W_l{k}_zero_point", f"R_l{k}_scale",
                   f"R_l{k}_zero_point"]
        quantized = helper.make_node("DynamicQuantizeLSTM", inputs, list(node.output),
                                     name=node.name, domain=DOMAIN)
        quantized.attribute.extend(node.attribute)
        graph.node.remove(node)
        graph.node.insert(position, quantized)
    model.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    checker.check_model(model)
    return model
