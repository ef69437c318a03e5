"""ONNX export of a whole model: an ``Embedding`` and a ``Linear`` readout around the LSTM.

``to_onnx([emb, lstm, head])`` builds the LSTM's graph as ``to_onnx(lstm)`` does, then feeds
its ``X`` from a ``Gather`` of the embedding table and reads its ``Y`` out through a
``MatMul`` (and ``Add``) of the readout: one graph computing ``head(lstm(emb(tokens)))``.
"""
from __future__ import annotations

import numpy as np

from lstmx.layers import LSTM
from lstmx.modules import Embedding, Linear
from lstmx.quantized import QuantizedLSTM

__all__ = ["sequential_to_onnx"]


def _split(modules):
    """(embedding or None, lstm, readout or None) from the sequence of modules."""
    modules = list(modules)
    emb = modules.pop(0) if modules and isinstance(modules[0], Embedding) else None
    head = modules.pop() if len(modules) > 1 and isinstance(modules[-1], Linear) else None
    if len(modules) != 1 or not isinstance(modules[0], (LSTM, QuantizedLSTM)):
        got = [type(m).__name__ for m in ([emb] if emb else []) + modules +
               ([head] if head else [])]
        raise TypeError(f"model must be an LSTM, optionally with an Embedding before it and "
                        f"a Linear after it: [Embedding, LSTM, Linear]; got {got}")
    lstm = modules[0]
    cfg = lstm.config
    if emb is not None:
        if emb.embedding_dim != cfg.input_size:
            raise ValueError(f"the Embedding's vectors have {emb.embedding_dim} features; the "
                             f"LSTM reads input_size={cfg.input_size}")
        if emb.dtype != cfg.dtype:
            raise ValueError(f"the Embedding is {emb.dtype}, the LSTM {cfg.dtype}; export "
                             "modules of one dtype")
    if head is not None:
        features = cfg.num_directions * cfg.output_size
        if head.in_features != features:
            raise ValueError(f"the Linear reads in_features={head.in_features}; the LSTM "
                             f"outputs {features} features (D*H_out)")
        if head.dtype != cfg.dtype:
            raise ValueError(f"the Linear is {head.dtype}, the LSTM {cfg.dtype}; export "
                             "modules of one dtype")
    return emb, lstm, head


def sequential_to_onnx(modules, to_onnx, **options):
    """The graph of ``[Embedding, LSTM, Linear]`` (either end optional); see ``to_onnx``."""
    from onnx import TensorProto, checker, helper, numpy_helper

    emb, lstm, head = _split(modules)
    model = to_onnx(lstm, **options)
    if emb is None and head is None:
        return model
    graph = model.graph
    cfg = lstm.config
    elem = TensorProto.FLOAT if cfg.dtype == np.float32 else TensorProto.DOUBLE
    seq, batch = "seq_len", "batch"
    lead = [batch, seq] if cfg.batch_first else [seq, batch]

    if emb is not None:
        x = next(i for i in graph.input if i.name == "X")
        position = list(graph.input).index(x)
        graph.input.remove(x)
        graph.input.insert(position, helper.make_tensor_value_info("tokens", TensorProto.INT64,
                                                                   lead))
        graph.initializer.append(numpy_helper.from_array(emb.weight, "embedding.weight"))
        # X = weight[tokens]   (.., E) = (V, E)[(..)]
        graph.node.insert(0, helper.make_node("Gather", ["embedding.weight", "tokens"], ["X"],
                                              name="embedding", axis=0))

    if head is not None:
        D, H = cfg.num_directions, cfg.output_size
        y = next(o for o in graph.output if o.name == "Y")
        position = list(graph.output).index(y)
        graph.output.remove(y)
        nodes = []
        features = "Y"
        if not cfg.batch_first:  # (T, D, B, H) -> (T, B, D, H)
            nodes.append(helper.make_node("Transpose", ["Y"], ["Y_tbdh"], name="Y_tbdh",
                                          perm=[0, 2, 1, 3]))
            features = "Y_tbdh"
        graph.initializer.append(numpy_helper.from_array(np.array([0, 0, D * H], np.int64),
                                                         "readout.shape"))
        # (.., D, H) -> (.., D*H), lstmx's y
        nodes.append(helper.make_node("Reshape", [features, "readout.shape"], ["y"],
                                      name="y"))
        graph.initializer.append(numpy_helper.from_array(
            np.ascontiguousarray(head.weight.T), "readout.weight_t"))
        out = "output" if "bias" not in head.parameters() else "readout.matmul"
        # output = y W^T + b   (.., O) = (.., D*H)(D*H, O) + (O,)
        nodes.append(helper.make_node("MatMul", ["y", "readout.weight_t"], [out], name=out))
        if out != "output":
            graph.initializer.append(numpy_helper.from_array(head.bias, "readout.bias"))
            nodes.append(helper.make_node("Add", [out, "readout.bias"], ["output"],
                                          name="output"))
        graph.node.extend(nodes)
        graph.output.insert(position, helper.make_tensor_value_info(
            "output", elem, lead + [head.out_features]))
    checker.check_model(model)
    return model
