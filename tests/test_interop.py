"""Weight interop: PyTorch, Keras 3, TF1 and ONNX layouts, both ways.

Round trips that start from the other framework's layout are bit-exact. Imported models are
checked against the framework itself where it installs here (torch, Keras on the torch
backend, onnxruntime); TF1 cannot be installed, so its cell is written out below in NumPy
from TensorFlow's ``rnn_cell_impl.LSTMCell.call``. CI installs torch, keras, onnx and
onnxruntime (the test extras); there their absence fails rather than skips.
"""
import itertools
import os
import subprocess
import sys

# Keras 3 picks its backend when first imported; torch is the one in the test extras.
os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from numpy.testing import assert_allclose, assert_array_equal  # noqa: E402

import lstmx  # noqa: E402
from _helpers import assert_same_model, require  # noqa: E402
from lstmx.interop import (from_keras_weights, from_onnx, from_tf1, from_torch,  # noqa: E402
                           to_keras_weights, to_onnx, to_tf1, to_torch)

# Two implementations of the same float32 (float64) operations in different orders over a
# few steps differ by a few ulp of O(1) values; this is that bound with a margin of ~10x.
PRECISION = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}
T, B, I, H = 6, 4, 3, 5


def close(dtype):
    return PRECISION[np.dtype(dtype).type]


def with_zero_bias_hh(model):
    """``model`` with its recurrent biases folded into ``bias_ih``: one-bias layouts hold
    exactly this, so a round trip through them is exact for it."""
    params = model.parameters()
    for name in params:
        if name.startswith("bias_hh"):
            params[name.replace("hh", "ih")][...] += params[name]
            params[name][...] = 0
    return model


def inputs(model, rng, lengths=False):
    cfg = model.config
    D, L = cfg.num_directions, cfg.num_layers
    x = rng.standard_normal((B, T, cfg.input_size) if cfg.batch_first
                            else (T, B, cfg.input_size)).astype(cfg.dtype)
    h0 = rng.standard_normal((L * D, B, cfg.output_size)).astype(cfg.dtype)
    c0 = rng.standard_normal((L * D, B, cfg.hidden_size)).astype(cfg.dtype)
    lens = np.array([T, 1, T - 2, 3])[:B] if lengths else None
    return x, (h0, c0), lens


def test_gate_order_tables():
    # The documented tables: block k of each framework is this gate of lstmx (i f g o).
    from lstmx import _interop_gates as _gates
    a = np.arange(8.0)  # two rows per gate
    assert_array_equal(_gates.reorder(a, "ifgo", _gates.ONNX), [0, 1, 6, 7, 2, 3, 4, 5])
    assert_array_equal(_gates.reorder(a, "ifgo", _gates.TF1), [0, 1, 4, 5, 2, 3, 6, 7])
    assert_array_equal(_gates.reorder(a, "ifgo", _gates.KERAS), a)
    for order in (_gates.ONNX, _gates.TF1):
        assert_array_equal(_gates.reorder(_gates.reorder(a, "ifgo", order), order, "ifgo"), a)


def test_optional_frameworks_not_imported():
    # Only the functions that need a framework import it; Keras and TF1 never do.
    code = ("import sys, numpy as np, lstmx\n"
            "m = lstmx.LSTM(3, 4, seed=0)\n"
            "lstmx.from_keras_weights(lstmx.to_keras_weights(m))\n"
            "lstmx.from_tf1(lstmx.to_tf1(m, forget_bias=1.0), forget_bias=1.0)\n"
            "lstmx.from_torch(m.state_dict())\n"
            "bad = [k for k in ('torch', 'onnx', 'onnxruntime', 'keras', 'tensorflow')"
            " if k in sys.modules]\n"
            "assert not bad, bad\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# ---------------------------------------------------------------------------------------
# PyTorch

TORCH_CONFIGS = [dict(), dict(num_layers=2, bidirectional=True), dict(proj_size=2),
                 dict(bias=False, batch_first=True), dict(num_layers=2, proj_size=3,
                                                          bidirectional=True)]


@pytest.mark.parametrize("options", TORCH_CONFIGS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_round_trips(torch, options, dtype):
    model = lstmx.LSTM(I, H, dtype=dtype, seed=1, **options)
    module = to_torch(model)
    assert module.weight_ih_l0.dtype == (torch.float32 if dtype == np.float32
                                         else torch.float64)
    assert_same_model(from_torch(module), model)
    # From torch's side: its own initialisation, the module and its state dict of tensors.
    torch.manual_seed(0)
    module = torch.nn.LSTM(I, H, dtype=module.weight_ih_l0.dtype,
                           **{k: v for k, v in options.items()})
    back = to_torch(from_torch(module))
    for name, value in module.state_dict().items():
        assert torch.equal(back.state_dict()[name], value), name
    assert_same_model(from_torch(module.state_dict(),
                                 batch_first=options.get("batch_first", False)),
                      from_torch(module))


# torch's own notice that it computes LSTMP without oneDNN; not about our conversion.
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("options", TORCH_CONFIGS)
def test_torch_module_outputs_agree(torch, options):
    torch.manual_seed(1)
    module = torch.nn.LSTM(I, H, **options)
    model = from_torch(module)
    x, (h0, c0), _ = inputs(model, np.random.default_rng(0))
    with torch.no_grad():
        y_t, (h_t, c_t) = module(torch.from_numpy(x), (torch.from_numpy(h0),
                                                        torch.from_numpy(c0)))
    y, (h, c) = model(x, (h0, c0))
    for got, want in ((y, y_t), (h, h_t), (c, c_t)):
        assert_allclose(got, want.numpy(), **close(np.float32))


def test_torch_cell(torch):
    torch.manual_seed(2)
    module = torch.nn.LSTMCell(I, H)
    cell = from_torch(module)
    assert isinstance(cell, lstmx.LSTMCell)
    x = np.random.default_rng(0).standard_normal((B, I)).astype(np.float32)
    with torch.no_grad():
        h_t, c_t = module(torch.from_numpy(x))
    h, c = cell(x)
    assert_allclose(h, h_t.numpy(), **close(np.float32))
    assert_allclose(c, c_t.numpy(), **close(np.float32))
    assert_same_model(from_torch(to_torch(cell)), cell)
    assert_same_model(from_torch(module.state_dict()), cell)


def test_from_torch_lstmx_state_dict_with_peepholes():
    # Not torch's, but the same names: peepholes and h = o * c come through too.
    model = lstmx.LSTM(I, H, num_layers=2, peephole=True, output_activation="identity",
                       dtype=np.float64, seed=3)
    assert_same_model(from_torch(model.state_dict(), output_activation="identity"), model)


def test_to_torch_rejects_what_torch_lacks(torch):
    with pytest.raises(ValueError, match="no peepholes"):
        to_torch(lstmx.LSTM(I, H, peephole=True))
    with pytest.raises(ValueError, match="identity"):
        to_torch(lstmx.LSTMCell(I, H, output_activation="identity"))


def test_from_torch_rejects_bad_state_dicts():
    sd = lstmx.LSTM(I, H, seed=0).state_dict()
    with pytest.raises(ValueError, match="unexpected key 'weight_xx_l0'"):
        from_torch({**sd, "weight_xx_l0": sd["bias_ih_l0"]})
    with pytest.raises(ValueError, match="empty"):
        from_torch({})
    with pytest.raises(TypeError, match="torch.nn.LSTM"):
        from_torch([sd])
    with pytest.raises(TypeError, match="must hold floats"):
        from_torch({**sd, "bias_ih_l0": np.arange(4 * H)})
    with pytest.raises(ValueError, match="missing"):  # the keys say 2 layers, one is partial
        from_torch({**sd, "weight_ih_l1": sd["weight_ih_l0"]})


# ---------------------------------------------------------------------------------------
# Keras 3


def keras_numpy(t):
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def keras_stack(keras, model):
    """Keras layers computing ``model`` (batch-major, returning sequences and states)."""
    cfg = model.config
    layers = []
    for _ in range(cfg.num_layers):
        # zero_output_for_mask: zeros past each length, as lstmx (Bidirectional sets it).
        layer = keras.layers.LSTM(cfg.hidden_size, use_bias=cfg.bias, return_sequences=True,
                                  return_state=True, zero_output_for_mask=True,
                                  dtype=cfg.dtype.name)
        if cfg.bidirectional:
            layer = keras.layers.Bidirectional(layer, dtype=cfg.dtype.name)
        layers.append(layer)
    return layers


def run_keras(layers, x, state, mask=None):
    """Outputs of stacked Keras layers: y and per-cell (h, c) in lstmx's index order."""
    hs, cs, D = [], [], 2 if hasattr(layers[0], "forward_layer") else 1
    for k, layer in enumerate(layers):
        init = None
        if state is not None:
            init = [s for d in range(D) for s in (state[0][k * D + d], state[1][k * D + d])]
        out = [keras_numpy(o) for o in layer(x, initial_state=init, mask=mask)]
        x = out[0]
        hs += out[1::2]
        cs += out[2::2]
    return x, np.stack(hs), np.stack(cs)


@pytest.mark.parametrize("options", [dict(), dict(bidirectional=True),
                                     dict(num_layers=2, bias=False),
                                     dict(num_layers=2, bidirectional=True),
                                     dict(dtype=np.float64)])
def test_keras_agrees_both_ways(keras, options):
    rng = np.random.default_rng(0)
    model = lstmx.LSTM(I, H, batch_first=True, seed=4, **options)
    # Keras 3.15's masked path (torch backend) rounds to float32, so lengths are tested in
    # float32 only; float64 keeps its tight bound on full-length sequences.
    x, state, lens = inputs(model, rng, lengths=model.dtype == np.float32)
    mask = None if lens is None else np.arange(T)[None, :] < lens[:, None]
    layers = keras_stack(keras, model)
    run_keras(layers, x, None)  # builds the layers
    for layer, weights in zip(layers, to_keras_weights(model)):
        layer.set_weights(weights)
    y, (h, c) = model(x, state, lens)
    y_k, h_k, c_k = run_keras(layers, x, state, mask)
    tol = close(model.dtype)
    assert_allclose(y, y_k, **tol)
    assert_allclose(h, h_k, **tol)
    assert_allclose(c, c_k, **tol)

    # Keras to lstmx: Keras' own initialisation (bias with unit_forget_bias) read back.
    layers = keras_stack(keras, model)
    y_k, h_k, c_k = run_keras(layers, x, state, mask)
    imported = from_keras_weights(layers, batch_first=True)
    y, (h, c) = imported(x, state, lens)
    assert_allclose(y, y_k, **tol)
    assert_allclose(h, h_k, **tol)
    assert_allclose(c, c_k, **tol)


@pytest.mark.parametrize("options", [dict(), dict(bias=False), dict(num_layers=3),
                                     dict(num_layers=2, bidirectional=True, dtype=np.float64)])
def test_keras_round_trips_exact(options):
    rng = np.random.default_rng(5)
    # From Keras' layout: arbitrary arrays of its shapes come back bit for bit.
    model = lstmx.LSTM(I, H, seed=0, **options)
    weights = [[rng.standard_normal(w.shape).astype(model.dtype) for w in layer]
               for layer in to_keras_weights(model)]
    back = to_keras_weights(from_keras_weights(weights))
    for wl, bl in zip(weights, back, strict=True):
        for a, b in zip(wl, bl, strict=True):
            assert a.dtype == b.dtype
            assert_array_equal(a, b)
    # From lstmx's: exact for a model whose biases are already summed into bias_ih.
    model = with_zero_bias_hh(lstmx.LSTM(I, H, seed=1, **options))
    assert_same_model(from_keras_weights(to_keras_weights(model)), model)


def test_keras_cell(keras):
    cell = with_zero_bias_hh(lstmx.LSTMCell(I, H, seed=6))
    weights = to_keras_weights(cell)
    assert [w.shape for w in weights] == [(I, 4 * H), (H, 4 * H), (4 * H,)]
    assert_same_model(from_keras_weights(weights, cell=True), cell)
    k_cell = keras.layers.LSTMCell(H)
    k_cell.build((B, I))
    k_cell.set_weights(weights)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, I)).astype(np.float32)
    h0, c0 = rng.standard_normal((2, B, H)).astype(np.float32)
    _, (h_k, c_k) = k_cell(x, [h0, c0])  # Keras' state order: [h, c]
    h, c = cell(x, (h0, c0))
    assert_allclose(h, keras_numpy(h_k), **close(np.float32))
    assert_allclose(c, keras_numpy(c_k), **close(np.float32))


def test_keras_rejects_what_it_cannot_compute(keras):
    for options in (dict(peephole=True), dict(proj_size=2), dict(output_activation="identity")):
        with pytest.raises(ValueError, match="Keras' LSTM has no peepholes"):
            to_keras_weights(lstmx.LSTM(I, H, **options))
    layer = keras.layers.LSTM(H, activation="relu")
    layer(np.zeros((1, 2, I), np.float32))
    with pytest.raises(ValueError, match="activation='relu'"):
        from_keras_weights(layer)
    layer = keras.layers.Bidirectional(keras.layers.LSTM(H), merge_mode="sum")
    layer(np.zeros((1, 2, I), np.float32))
    with pytest.raises(ValueError, match="merge_mode='concat'"):
        from_keras_weights(layer)
    with pytest.raises(ValueError, match="no weights yet"):
        from_keras_weights(keras.layers.LSTM(H))
    w = to_keras_weights(lstmx.LSTM(I, H))[0]
    with pytest.raises(ValueError, match="2, 3, 4 or 6"):
        from_keras_weights(w[:1])
    with pytest.raises(ValueError, match="expected weights of shapes"):
        from_keras_weights([w[0], w[1], w[2][:-1]])
    with pytest.raises(TypeError, match="an empty list"):
        from_keras_weights([])


# ---------------------------------------------------------------------------------------
# TF1: tf.compat.v1.nn.rnn_cell.LSTMCell, as TensorFlow's rnn_cell_impl computes it.


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def tf1_cell_step(v, x, c_prev, m_prev, forget_bias):
    lstm_matrix = np.concatenate([x, m_prev], 1) @ v["kernel"] + v["bias"]
    i, j, f, o = np.split(lstm_matrix, 4, axis=1)
    if "w_i_diag" in v:
        c = (sigmoid(f + forget_bias + v["w_f_diag"] * c_prev) * c_prev
             + sigmoid(i + v["w_i_diag"] * c_prev) * np.tanh(j))
        m = sigmoid(o + v["w_o_diag"] * c) * np.tanh(c)
    else:
        c = sigmoid(f + forget_bias) * c_prev + sigmoid(i) * np.tanh(j)
        m = sigmoid(o) * np.tanh(c)
    if "projection/kernel" in v:
        m = m @ v["projection/kernel"]
    return c, m


def tf1_run(cells, x, state, forget_bias, D):
    """tf.nn.dynamic_rnn over a MultiRNNCell (D = 1), or stack_bidirectional_dynamic_rnn
    (D = 2, the backward cell reading the sequence reversed), on (T, B, I) input."""
    hs, cs = [], []
    for k in range(len(cells) // D):
        outs = []
        for d in range(D):
            v = cells[k * D + d]
            c, m = state[1][k * D + d], state[0][k * D + d]
            ys = []
            for x_t in (x[::-1] if d else x):
                c, m = tf1_cell_step(v, x_t, c, m, forget_bias)
                ys.append(m)
            outs.append(np.stack(ys[::-1] if d else ys))
            hs.append(m)
            cs.append(c)
        x = np.concatenate(outs, axis=-1)
    return x, np.stack(hs), np.stack(cs)


def random_tf1_cells(rng, L, D, P, peephole):
    H_out = P or H
    cells = []
    for k in range(L * D):
        rows = (I if k < D else D * H_out) + H_out
        v = {"kernel": rng.uniform(-0.5, 0.5, (rows, 4 * H)),
             "bias": rng.uniform(-0.5, 0.5, 4 * H)}
        if peephole:
            v.update({n: rng.uniform(-0.5, 0.5, H) for n in ("w_i_diag", "w_f_diag",
                                                             "w_o_diag")})
        if P:
            v["projection/kernel"] = rng.uniform(-0.5, 0.5, (H, P))
        cells.append(v)
    return cells


TF1_CASES = list(itertools.product([1, 2], [1, 2], [0, 2], [False, True]))


@pytest.mark.parametrize("L, D, P, peephole", TF1_CASES)
def test_tf1_matches_its_equations(L, D, P, peephole):
    rng = np.random.default_rng(7)
    cells = random_tf1_cells(rng, L, D, P, peephole)
    model = from_tf1(cells, forget_bias=1.0, bidirectional=D == 2)
    assert model.dtype == np.float64
    x, state, _ = inputs(model, rng)
    y, (h, c) = model(x, state)
    y_tf, h_tf, c_tf = tf1_run(cells, x, state, 1.0, D)
    assert_allclose(y, y_tf, **close(np.float64))
    assert_allclose(h, h_tf, **close(np.float64))
    assert_allclose(c, c_tf, **close(np.float64))
    # Export for cells built with any forget_bias computes the same.
    for fb in (0.0, 1.0, 2.5):
        y_tf, h_tf, c_tf = tf1_run(to_tf1(model, forget_bias=fb), x, state, fb, D)
        assert_allclose(y, y_tf, **close(np.float64))
        assert_allclose(c, c_tf, **close(np.float64))


@pytest.mark.parametrize("L, D, P, peephole", TF1_CASES)
def test_tf1_round_trips_exact(L, D, P, peephole):
    rng = np.random.default_rng(8)
    cells = [{k: v.astype(np.float32) for k, v in c.items()}
             for c in random_tf1_cells(rng, L, D, P, peephole)]
    back = to_tf1(from_tf1(cells, forget_bias=0.0, bidirectional=D == 2), forget_bias=0.0)
    assert len(back) == len(cells)
    for a, b in zip(cells, back):
        assert list(a) == list(b) or sorted(a) == sorted(b)
        for name in a:
            assert a[name].dtype == b[name].dtype
            assert_array_equal(a[name], b[name], err_msg=name)
    model = with_zero_bias_hh(lstmx.LSTM(I, H, num_layers=L, bidirectional=D == 2,
                                         proj_size=P, peephole=peephole, seed=9))
    assert_same_model(from_tf1(to_tf1(model, forget_bias=0.0), forget_bias=0.0,
                               bidirectional=D == 2), model)


def test_tf1_forget_bias_folds_into_bias():
    cell = with_zero_bias_hh(lstmx.LSTMCell(I, H, dtype=np.float64, seed=10))
    v = to_tf1(cell, forget_bias=1.0)
    b = cell.bias_ih
    # TF1's order i, j, f, o: its f block is lstmx's bias minus the run-time forget_bias.
    assert_array_equal(v["bias"][2 * H:3 * H], b[H:2 * H] - 1.0)
    assert_array_equal(v["bias"][H:2 * H], b[2 * H:3 * H])
    back = from_tf1(v, forget_bias=1.0, cell=True)
    assert_allclose(back.bias_ih, b, rtol=0, atol=4 * np.finfo(np.float64).eps)


def test_tf1_without_bias():
    model = lstmx.LSTM(I, H, bias=False, seed=11)
    cells = to_tf1(model, forget_bias=0.0)
    assert_array_equal(cells[0]["bias"], 0)  # TF1's cell always has a bias
    del cells[0]["bias"]
    assert_same_model(from_tf1(cells, forget_bias=0.0), model)
    with pytest.raises(ValueError, match="needs a bias"):
        from_tf1(cells, forget_bias=1.0)


def test_tf1_rejects_bad_input():
    with pytest.raises(ValueError, match="one activation"):
        to_tf1(lstmx.LSTM(I, H, output_activation="identity"), forget_bias=1.0)
    with pytest.raises(TypeError, match="forget_bias"):
        to_tf1(lstmx.LSTM(I, H), forget_bias=None)
    with pytest.raises(TypeError, match="forget_bias"):
        from_tf1({}, forget_bias=True)
    cells = to_tf1(lstmx.LSTM(I, H, num_layers=2, peephole=True, seed=0), forget_bias=0.0)
    with pytest.raises(ValueError, match=r"cells\[1\]: .*missing \['w_o_diag'\]"):
        from_tf1([cells[0], {k: v for k, v in cells[1].items() if k != "w_o_diag"}],
                 forget_bias=0.0)
    with pytest.raises(ValueError, match=r"cells\[1\]\['kernel'\] must have shape"):
        from_tf1([cells[0], {**cells[1], "kernel": cells[0]["kernel"]}], forget_bias=0.0)
    with pytest.raises(ValueError, match="even number"):
        from_tf1(cells[:1], forget_bias=0.0, bidirectional=True)
    with pytest.raises(ValueError, match="one cell without projection"):
        from_tf1(cells, forget_bias=0.0, cell=True)


# ---------------------------------------------------------------------------------------
# ONNX, with onnxruntime as the independent oracle (its LSTM runs float32 only).

ONNX_CASES = list(itertools.product([1, 2], [False, True], [False, True], [False, True],
                                    ["tanh", "identity"], [False, True]))


def run_ort(ort, onnx_model, feeds):
    session = ort.InferenceSession(onnx_model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.mark.parametrize("L, bidirectional, peephole, bias, act, batch_first", ONNX_CASES)
def test_onnxruntime_runs_export(ort, L, bidirectional, peephole, bias, act, batch_first):
    model = lstmx.LSTM(I, H, num_layers=L, bidirectional=bidirectional, peephole=peephole,
                       bias=bias, output_activation=act, batch_first=batch_first, seed=12)
    rng = np.random.default_rng(13)
    x, (h0, c0), lens = inputs(model, rng, lengths=True)
    y, (h, c) = model(x, (h0, c0), lens)
    onnx_model = to_onnx(model, initial_state=True, sequence_lens=True)
    # batch_first exports ONNX's layout=1: batch leads in every tensor.
    lead = (lambda a: a.swapaxes(0, 1)) if batch_first else (lambda a: a)
    Y, Y_h, Y_c = run_ort(ort, onnx_model, {"X": x, "initial_h": lead(h0),
                                           "initial_c": lead(c0),
                                           "sequence_lens": lens.astype(np.int32)})
    D = model.config.num_directions
    if batch_first:
        assert Y.shape == (B, T, D, H)
        Y = Y.reshape(B, T, D * H)
    else:
        assert Y.shape == (T, D, B, H)
        Y = Y.transpose(0, 2, 1, 3).reshape(T, B, D * H)
    assert_allclose(y, Y, **close(np.float32))
    assert_allclose(h, lead(Y_h), **close(np.float32))
    assert_allclose(c, lead(Y_c), **close(np.float32))
    assert_same_model(from_onnx(onnx_model), model)


@pytest.mark.parametrize("L, bidirectional, peephole, batch_first",
                         [(1, False, True, False), (2, True, True, True), (2, True, False, False)])
def test_onnx_float64_export_runs_in_onnx_reference(L, bidirectional, peephole, batch_first):
    # onnxruntime's LSTM is float32 only; onnx's reference evaluator runs float64, but it
    # ignores sequence_lens and the activations, so those stay with the float32 test above.
    require("onnx")
    from onnx.reference import ReferenceEvaluator
    model = lstmx.LSTM(I, H, num_layers=L, bidirectional=bidirectional, peephole=peephole,
                       batch_first=batch_first, dtype=np.float64, seed=18)
    x, (h0, c0), _ = inputs(model, np.random.default_rng(19))
    lead = (lambda a: a.swapaxes(0, 1)) if batch_first else (lambda a: a)
    Y, Y_h, Y_c = ReferenceEvaluator(to_onnx(model, initial_state=True)).run(
        None, {"X": x, "initial_h": lead(h0), "initial_c": lead(c0)})
    y, (h, c) = model(x, (h0, c0))
    D = model.config.num_directions
    Y = Y.reshape(B, T, D * H) if batch_first else Y.transpose(0, 2, 1, 3).reshape(T, B, D * H)
    assert Y.dtype == np.float64
    assert_allclose(y, Y, **close(np.float64))
    assert_allclose(h, lead(Y_h), **close(np.float64))
    assert_allclose(c, lead(Y_c), **close(np.float64))


def test_missing_optional_package_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install onnx"):
        to_onnx(lstmx.LSTM(I, H))
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="needs the optional package 'torch'"):
        to_torch(lstmx.LSTM(I, H))


def test_onnx_optional_inputs_in_between(ort):
    # No B and no initial state, but sequence_lens and P: empty names hold their places.
    model = lstmx.LSTM(I, H, bias=False, peephole=True, bidirectional=True, seed=21)
    x, _, lens = inputs(model, np.random.default_rng(22), lengths=True)
    onnx_model = to_onnx(model, sequence_lens=True)
    assert list(onnx_model.graph.node[0].input) == ["X", "W_l0", "R_l0", "", "sequence_lens",
                                                    "", "", "P_l0"]
    Y, Y_h, Y_c = run_ort(ort, onnx_model, {"X": x, "sequence_lens": lens.astype(np.int32)})
    y, (h, c) = model(x, lengths=lens)
    assert_allclose(y, Y.transpose(0, 2, 1, 3).reshape(T, B, 2 * H), **close(np.float32))
    assert_allclose(h, Y_h, **close(np.float32))
    assert_allclose(c, Y_c, **close(np.float32))


def test_onnx_export_defaults(ort):
    onnx = require("onnx")
    model = lstmx.LSTM(I, H, peephole=True, seed=14)
    onnx_model = to_onnx(model)
    assert onnx_model.ir_version == 13
    assert [o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")] == [21]
    assert [i.name for i in onnx_model.graph.input] == ["X"]
    assert [o.name for o in onnx_model.graph.output] == ["Y", "Y_h", "Y_c"]
    assert [n.op_type for n in onnx_model.graph.node] == ["LSTM"]
    x, _, _ = inputs(model, np.random.default_rng(0))
    Y, Y_h, Y_c = run_ort(ort, onnx_model, {"X": x})
    y, (h, c) = model(x)
    assert_allclose(y, Y[:, 0], **close(np.float32))
    assert_allclose(c, Y_c, **close(np.float32))
    assert to_onnx(model, opset=17, ir_version=8).ir_version == 8
    with pytest.raises(ValueError, match="opset must be an integer >= 14"):
        to_onnx(model, opset=13)
    onnx.checker.check_model(to_onnx(lstmx.LSTM(I, H, dtype=np.float64)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_onnx_round_trips_exact(tmp_path, dtype):
    require("onnx")
    model = lstmx.LSTM(I, H, num_layers=3, bidirectional=True, peephole=True,
                       output_activation="identity", batch_first=True, dtype=dtype, seed=15)
    onnx_model = to_onnx(model)
    assert_same_model(from_onnx(onnx_model), model)
    assert_same_model(from_onnx(onnx_model.SerializeToString()), model)
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_model.SerializeToString())
    assert_same_model(from_onnx(path), model)
    cell = lstmx.LSTMCell(I, H, bias=False, peephole=True, dtype=dtype, seed=16)
    assert_same_model(from_onnx(to_onnx(cell)), cell)
    assert from_onnx(onnx_model, batch_first=False).config.batch_first is False


def foreign_lstm_graph(rng, direction="bidirectional", **attrs):
    """A one-node ONNX LSTM graph written by hand, not by lstmx."""
    from onnx import TensorProto, helper, numpy_helper
    D = 2 if direction == "bidirectional" else 1
    weights = {"W": rng.uniform(-0.5, 0.5, (D, 4 * H, I)),
               "R": rng.uniform(-0.5, 0.5, (D, 4 * H, H)),
               "B": rng.uniform(-0.5, 0.5, (D, 8 * H)),
               "P": rng.uniform(-0.5, 0.5, (D, 3 * H))}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "", "", "", "P"], ["Y", "Y_h", "Y_c"],
                            hidden_size=H, direction=direction, **attrs)
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        [node], "foreign", [helper.make_tensor_value_info("X", f, [T, B, I])],
        [helper.make_tensor_value_info(n, f, None) for n in ("Y", "Y_h", "Y_c")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model


def test_onnx_import_of_foreign_graph(ort):
    require("onnx")
    rng = np.random.default_rng(17)
    onnx_model = foreign_lstm_graph(rng)
    model = from_onnx(onnx_model)
    assert model.config.peephole and model.config.bidirectional
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    Y, Y_h, Y_c = run_ort(ort, onnx_model, {"X": x})
    y, (h, c) = model(x)
    assert_allclose(y, Y.transpose(0, 2, 1, 3).reshape(T, B, 2 * H), **close(np.float32))
    assert_allclose(h, Y_h, **close(np.float32))
    assert_allclose(c, Y_c, **close(np.float32))


def test_onnx_import_reads_layout():
    require("onnx")
    rng = np.random.default_rng(20)
    assert from_onnx(foreign_lstm_graph(rng, layout=1)).config.batch_first is True
    assert from_onnx(foreign_lstm_graph(rng)).config.batch_first is False
    assert from_onnx(foreign_lstm_graph(rng, layout=1), batch_first=False).config.batch_first \
        is False


@pytest.mark.parametrize("attrs, message", [
    (dict(clip=3.0), "clip"),
    (dict(input_forget=1), "input_forget"),
    (dict(activations=["Sigmoid", "Tanh", "Relu"] * 2), "activations"),
    (dict(activations=["Sigmoid", "Tanh", "Affine"] * 2, activation_alpha=[2.0, 2.0],
          activation_beta=[0.0, 0.0]), "Affine"),
])
def test_onnx_import_rejects_what_lstmx_lacks(attrs, message):
    require("onnx")
    onnx_model = foreign_lstm_graph(np.random.default_rng(0), **attrs)
    with pytest.raises(ValueError, match=message):
        from_onnx(onnx_model)


def test_onnx_rejects_projection_and_non_stacks():
    onnx = require("onnx")
    with pytest.raises(ValueError, match="no projection"):
        to_onnx(lstmx.LSTM(I, H, proj_size=2))
    # Two LSTMs side by side on the same input are not a stack.
    two = to_onnx(lstmx.LSTM(I, H, num_layers=2, seed=0))
    second = [n for n in two.graph.node if n.op_type == "LSTM"][1]
    second.input[0] = "X"
    with pytest.raises(ValueError, match="not a stack"):
        from_onnx(two)
    empty = onnx.helper.make_model(onnx.helper.make_graph([], "empty", [], []))
    with pytest.raises(ValueError, match="no LSTM node"):
        from_onnx(empty)
    with pytest.raises(TypeError, match="onnx.ModelProto"):
        from_onnx(42)
