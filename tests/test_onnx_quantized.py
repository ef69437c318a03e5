"""to_onnx of int8 QuantizedLSTM / QuantizedLSTMCell as onnxruntime's DynamicQuantizeLSTM.

The weights and scales in the graph are lstmx's exactly; onnxruntime runs the graph, and its
outputs differ from lstmx int8's by no more than the two activation roundings can make them
(``step_bound`` below derives the bound of one step); what the operator cannot express is
refused.
"""
import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lstmx
from lstmx._interop_gates import LSTMX, ONNX, reorder
from lstmx.interop import to_onnx
from lstmx.io import scale_name
from lstmx.quantized import QuantizedLSTM, QuantizedLSTMCell

from _helpers import require

onnx = require("onnx")
ort = require("onnxruntime")
from onnx import numpy_helper  # noqa: E402

I, H, B = 4, 6, 3
FLOAT_SLOP = 1e-5  # float32 sums of a few dozen terms, in either library


def run_ort(proto, feeds):
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def initializers(proto):
    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}


@pytest.mark.parametrize("options", [dict(), dict(num_layers=2, bidirectional=True),
                                     dict(reverse=True, peephole=True, bias=False)])
def test_graph_holds_lstmx_weights_exactly(options):
    q = lstmx.LSTM(I, H, seed=0, **options).quantize("int8")
    proto = to_onnx(q)
    ops = [(n.domain, n.op_type) for n in proto.graph.node]
    assert ("", "LSTM") not in ops
    assert ops.count(("com.microsoft", "DynamicQuantizeLSTM")) == q.config.num_layers
    assert any(o.domain == "com.microsoft" and o.version == 1 for o in proto.opset_import)
    state, inits = q.state_dict(), initializers(proto)
    cfg = q.config
    for k in range(cfg.num_layers):
        for w_name, key in (("W", "weight_ih"), ("R", "weight_hh")):
            stored = inits[f"{w_name}_l{k}_quantized"]
            zero = inits[f"{w_name}_l{k}_zero_point"]
            scale = inits[f"{w_name}_l{k}_scale"]
            depth = I if (w_name == "W" and k == 0) else (
                H * cfg.num_directions if w_name == "W" else H)
            assert stored.shape == (cfg.num_directions, depth, 4 * H)
            assert scale.shape == zero.shape == (cfg.num_directions, 4 * H)
            assert scale.dtype == np.float32
            for d in range(cfg.num_directions):
                name = key + cfg.suffix(k, d)
                ints = stored[d].astype(np.int16) - zero[d].astype(np.int16)
                # (I, 4H) in i, o, f, c -> lstmx's (4H, I) in i, f, g, o
                assert_array_equal(reorder(ints.T, ONNX, LSTMX), state[name])
                assert_array_equal(reorder(scale[d], ONNX, LSTMX), state[scale_name(name)])


def dequantized(state, name):
    return state[name].astype(np.float64) * state[scale_name(name)].astype(np.float64)[:, None]


def row_step(a):
    """A bound on the rounding of each row of ``a`` by lstmx (to [-63, 63] with its own
    scale: half of max|row| / 63) and of the whole of ``a`` by onnxruntime (to uint8 with
    one asymmetric scale over [min(a, 0), max(a, 0)]: half of range / 255, plus as much for
    its integer zero point): one step of each, (B, 1)."""
    a = np.asarray(a, np.float64)
    lstmx_step = np.abs(a).max(axis=-1, keepdims=True) / 63
    ort_step = (max(a.max(), 0.0) - min(a.min(), 0.0)) / 255
    return lstmx_step + ort_step


def step_bound(q, layer, d, x, dx, h0, c0, c1):
    """A bound on |h1_ort - h1_lstmx| and |c1_ort - c1_lstmx| of one step of one direction.

    Both compute z = W x + R h0 + b with the same integer weights, from activations rounded
    differently: x within ``row_step(x)`` of each other (plus ``dx``, a bound on how far the
    two libraries' inputs already differ), h0 within ``row_step(h0)``. So
    |dz| <= |W| (dx + e_x) + |R| e_h; sigmoid is 1/4-Lipschitz and tanh 1-Lipschitz, so
    |di| <= |dz_i|/4, |df| <= |dz_f|/4, |dg| <= |dz_g|; c1 = f c0 + i g with |i|, |g| <= 1
    gives |dc| <= |c0| |df| + |di| + |dg|; the peephole p_o c1 adds |p_o| |dc| to |dz_o|; and
    h1 = o act(c1) with |o| <= 1 and act 1-Lipschitz gives |dh| <= |do| |act(c1)| + |dc|.
    """
    cfg = q.config
    sfx = "" if isinstance(q, QuantizedLSTMCell) else cfg.suffix(layer, d)
    state = q.state_dict()
    W = np.abs(dequantized(state, "weight_ih" + sfx))
    R = np.abs(dequantized(state, "weight_hh" + sfx))
    e_x = row_step(np.abs(x) + dx) + dx
    e_h = np.broadcast_to(row_step(h0), np.shape(h0))
    dz = e_x @ W.T + e_h @ R.T + FLOAT_SLOP
    dz_i, dz_f, dz_g, dz_o = np.split(dz, 4, axis=-1)
    dc = np.abs(c0) * dz_f / 4 + dz_i / 4 + dz_g
    if cfg.peephole:
        dz_o = dz_o + np.abs(state["weight_co" + sfx]) * dc
    act = np.abs(np.tanh(c1) if cfg.output_activation == "tanh" else c1)
    return dz_o / 4 * act + dc + FLOAT_SLOP, dc + FLOAT_SLOP


def one_layer(q, k):
    """Layer ``k`` of ``q`` alone, as an int8 QuantizedLSTM of the same weights."""
    import dataclasses
    cfg = q.config
    inputs = cfg.input_size if k == 0 else cfg.num_directions * cfg.hidden_size
    one = dataclasses.replace(cfg, num_layers=1, input_size=inputs, batch_first=False)
    state = {name.replace(f"_l{k}", "_l0"): v for name, v in q.state_dict().items()
             if f"_l{k}" in name}
    return QuantizedLSTM.from_state_dict(one, "int8", state)


@pytest.mark.parametrize("options", [
    dict(), dict(bidirectional=True), dict(peephole=True), dict(output_activation="identity"),
    dict(batch_first=True), dict(reverse=True), dict(bias=False),
    dict(num_layers=2, bidirectional=True, peephole=True), dict(num_layers=3)])
def test_onnxruntime_agrees_with_lstmx_int8_within_the_activation_rounding(options):
    rng = np.random.default_rng(1)
    model = lstmx.LSTM(I, H, seed=2, **options)
    q = model.quantize("int8")
    cfg = q.config
    L, D = cfg.num_layers, cfg.num_directions
    x = rng.standard_normal((1, B, I)).astype(np.float32)  # one step
    h0 = rng.uniform(-1, 1, (L * D, B, H)).astype(np.float32)
    c0 = rng.uniform(-2, 2, (L * D, B, H)).astype(np.float32)
    feeds = {"X": x.transpose(1, 0, 2) if cfg.batch_first else x,
             "initial_h": h0.transpose(1, 0, 2) if cfg.batch_first else h0,
             "initial_c": c0.transpose(1, 0, 2) if cfg.batch_first else c0}
    _, h_ort, c_ort = run_ort(to_onnx(q, initial_state=True), feeds)
    if cfg.batch_first:
        h_ort, c_ort = h_ort.transpose(1, 0, 2), c_ort.transpose(1, 0, 2)
    y, (h1, c1) = q(feeds["X"], (h0, c0))  # (lstmx's states are (L*D, B, H) either way)
    # The bound, layer by layer: each layer's input is the one before's output, already
    # apart by that layer's bound.
    inp, dx = x[0], np.zeros((B, I))
    for k in range(L):
        layer = one_layer(q, k)
        s = slice(k * D, (k + 1) * D)
        _, (hk, ck) = layer(inp[None], (h0[s], c0[s]))
        assert_array_equal(hk, h1[s])  # the layer alone is the model's layer
        bounds = [step_bound(layer, 0, d, inp, dx, h0[k * D + d], c0[k * D + d], ck[d])
                  for d in range(D)]
        for d, (dh, dc) in enumerate(bounds):
            assert np.all(np.abs(h_ort[k * D + d] - hk[d]) <= dh), (k, d)
            assert np.all(np.abs(c_ort[k * D + d] - ck[d]) <= dc), (k, d)
        inp = np.concatenate(list(hk), axis=-1)
        dx = np.concatenate([dh for dh, _ in bounds], axis=-1)
        if k == 0:
            # Not vacuous: h is O(1); one layer's bound is a few hundredths (it grows with
            # each layer that its input's difference passes through).
            assert dx.max() < 0.1


def test_cell_exports_as_one_step():
    cell = lstmx.LSTMCell(I, H, seed=3, peephole=True).quantize("int8")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((B, I)).astype(np.float32)
    h0 = rng.uniform(-1, 1, (B, H)).astype(np.float32)
    c0 = rng.uniform(-1, 1, (B, H)).astype(np.float32)
    _, h_ort, c_ort = run_ort(to_onnx(cell, initial_state=True),
                              {"X": x[None], "initial_h": h0[None], "initial_c": c0[None]})
    h1, c1 = cell(x, (h0, c0))
    dh, dc = step_bound(cell, 0, 0, x, np.zeros_like(x), h0, c0, c1)
    assert np.all(np.abs(h_ort[0] - h1) <= dh) and np.all(np.abs(c_ort[0] - c1) <= dc)


def test_sequences_and_lengths_run():
    """Several steps, sequence_lens and the zero default state: the graph runs and padding
    steps are zero, as lstmx's."""
    q = lstmx.LSTM(I, H, seed=5, bidirectional=True).quantize("int8")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, B, I)).astype(np.float32)
    lengths = np.array([5, 2, 1], np.int32)
    y_ort = run_ort(to_onnx(q, sequence_lens=True), {"X": x, "sequence_lens": lengths})[0]
    y = q(x, lengths=lengths)[0]
    y_ort = y_ort.transpose(0, 2, 1, 3).reshape(5, B, 2 * H)
    for b, n in enumerate(lengths):
        assert np.all(y_ort[n:, b] == 0) and np.all(y[n:, b] == 0)
    # The first forward step starts both from the zero state: one step's bound holds there
    # (with |tanh(c1)| <= 1 for the c1 that y does not show).
    zeros = np.zeros((B, H))
    dh, _ = step_bound(q, 0, 0, x[0], np.zeros((B, I)), zeros, zeros, np.full((B, H), np.inf))
    assert np.all(np.abs(y_ort[0, :, :H] - y[0, :, :H]) <= dh)


def test_bfloat16_and_projection_are_refused():
    with pytest.raises(ValueError, match="no ONNX or onnxruntime LSTM operator takes "
                                         "bfloat16 weights"):
        to_onnx(lstmx.LSTM(I, H).quantize("bfloat16"))
    with pytest.raises(ValueError, match="DynamicQuantizeLSTM has no projection; cannot "
                                         "export a model with proj_size=2"):
        to_onnx(lstmx.LSTM(I, H, proj_size=2).quantize("int8"))


def test_whole_model_with_a_quantized_lstm():
    """[Embedding, QuantizedLSTM, Linear] is one graph: the readout of the quantised LSTM's
    graph fed the embedded tokens."""
    emb = lstmx.Embedding(10, I, seed=7)
    q = lstmx.LSTM(I, H, seed=8).quantize("int8")
    head = lstmx.Linear(H, 5, seed=9)
    tokens = np.random.default_rng(10).integers(0, 10, (4, B))
    out = run_ort(to_onnx([emb, q, head]), {"tokens": tokens})[0]
    y = run_ort(to_onnx(q), {"X": emb(tokens)})[0][:, 0]  # (T, B, H)
    np.testing.assert_allclose(out, head(y), rtol=1e-5, atol=1e-6)
    ops = [n.op_type for n in to_onnx([emb, q, head]).graph.node]
    assert ops.count("DynamicQuantizeLSTM") == 1 and "LSTM" not in ops


def test_from_onnx_names_a_quantized_graph_it_does_not_read():
    proto = to_onnx(lstmx.LSTM(I, H).quantize("int8"))
    with pytest.raises(ValueError, match="DynamicQuantizeLSTM nodes: a quantised model, which "
                                         "from_onnx does not read"):
        lstmx.from_onnx(proto)


def direction(q, k, d):
    """Direction ``d`` of layer ``k`` of ``q`` alone, as a one-direction forward int8
    QuantizedLSTM (stepped one time step a call, in the direction's own time order)."""
    import dataclasses
    cfg = q.config
    inputs = cfg.input_size if k == 0 else cfg.num_directions * cfg.hidden_size
    one = dataclasses.replace(cfg, num_layers=1, input_size=inputs, batch_first=False,
                              bidirectional=False, reverse=False)
    sfx = cfg.suffix(k, d)
    state = {name.replace(sfx, "_l0"): v for name, v in q.state_dict().items()
             if name.endswith(sfx)}
    return QuantizedLSTM.from_state_dict(one, "int8", state)


def sequence_bound(step, xs, dxs, h0, c0):
    """Run one direction step by step (``step`` a one-direction model, ``xs`` (T, B, I) in
    its time order) and bound, step after step, how far onnxruntime's h and c can be from
    its own: ``step_bound``'s argument, with the state's difference carried on. With
    dh, dc the bounds of the step before: h differs by dh before it is rounded (so its
    rounding step is taken over |h| + dh); c_{t-1} by dc, which f (|f| <= 1) carries into
    c_t, while df multiplies |c_{t-1}| + dc; and the peepholes add |p_i| dc, |p_f| dc to
    dz_i, dz_f. Returns the h of every step and the bounds of h."""
    cfg = step.config
    state = step.state_dict()
    W = np.abs(dequantized(state, "weight_ih_l0"))
    R = np.abs(dequantized(state, "weight_hh_l0"))
    h, c = h0, c0
    dh, dc = np.zeros_like(h0, dtype=np.float64), np.zeros_like(c0, dtype=np.float64)
    hs, dhs = [], []
    for x, dx in zip(xs, dxs):
        _, (h1, c1) = step(x[None], (h[None], c[None]))
        h1, c1 = h1[0], c1[0]
        e_x = row_step(np.abs(x) + dx) + dx
        e_h = row_step(np.abs(h) + dh) + dh
        dz = e_x @ W.T + e_h @ R.T + FLOAT_SLOP
        dz_i, dz_f, dz_g, dz_o = np.split(dz, 4, axis=-1)
        if cfg.peephole:
            dz_i = dz_i + np.abs(state["weight_ci_l0"]) * dc
            dz_f = dz_f + np.abs(state["weight_cf_l0"]) * dc
        dc = (np.abs(c) + dc) * dz_f / 4 + dc + dz_i / 4 + dz_g + FLOAT_SLOP
        if cfg.peephole:
            dz_o = dz_o + np.abs(state["weight_co_l0"]) * dc
        act = np.abs(np.tanh(c1) if cfg.output_activation == "tanh" else c1)
        dh = dz_o / 4 * act + dc + FLOAT_SLOP
        h, c = h1, c1
        hs.append(h1)
        dhs.append(dh)
    return np.stack(hs), np.stack(dhs)


@pytest.mark.parametrize("options", [
    dict(), dict(reverse=True), dict(bidirectional=True, peephole=True),
    dict(num_layers=2, bidirectional=True), dict(output_activation="identity")])
def test_sequences_agree_within_the_bound_carried_through_time(options):
    """Over several steps (which exercises the direction of each node): onnxruntime's y
    within the bound of every step, the state's difference carried from step to step and
    from layer to layer."""
    T = 4
    rng = np.random.default_rng(11)
    q = lstmx.LSTM(I, H, seed=12, **options).quantize("int8")
    cfg = q.config
    L, D = cfg.num_layers, cfg.num_directions
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    y_ort = run_ort(to_onnx(q), {"X": x})[0]  # (T, D, B, H)
    y = q(x)[0]
    inp, dinp = x, np.zeros((T, B, I))
    for k in range(L):
        outs, bounds = [], []
        for d in range(D):
            order = slice(None, None, -1) if (d == 1 or cfg.reverse) else slice(None)
            zeros = np.zeros((B, H), np.float32)
            hs, dhs = sequence_bound(direction(q, k, d), inp[order], dinp[order], zeros, zeros)
            if k == 0:
                # Tight where each direction starts (a wrong direction, or a misplaced gate
                # block, is off by far more there); it grows about threefold a step after,
                # since the worst case lets every difference add up.
                assert dhs[0].max() < 0.1
            outs.append(hs[order])
            bounds.append(dhs[order])
        inp, dinp = np.concatenate(outs, axis=-1), np.concatenate(bounds, axis=-1)
    assert_array_equal(inp, y)  # stepping each direction alone is the model
    got = y_ort.transpose(0, 2, 1, 3).reshape(T, B, D * H)
    assert np.all(np.abs(got - y) <= dinp)
