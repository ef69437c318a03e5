"""LSTM(reverse=True): every layer runs each sequence backwards; checked against the reference,
finite differences, a bidirectional model's reverse half, onnxruntime and saved files."""
import itertools
import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from numpy.testing import assert_allclose, assert_array_equal

import lstmx
from lstmx import reference
from _helpers import FD_RTOL, directional_fd, random_problem, reference_run, require, tolerances

DTYPES = [np.float32, np.float64]
T, B, I, H = 6, 4, 5, 6

# peephole x output activation x projection x layers x lengths
COMBINATIONS = list(itertools.product(
    [False, True], ["tanh", "identity"], [0, 3], [1, 2], [False, True]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("peephole,act,proj,layers,lengths", COMBINATIONS)
def test_kernels_match_reference(dtype, peephole, act, proj, layers, lengths):
    lstm = lstmx.LSTM(I, H, num_layers=layers, proj_size=proj, peephole=peephole,
                      output_activation=act, dtype=dtype, seed=1, reverse=True)
    rng = np.random.default_rng(2)
    x, state, lens, dy, dstate = random_problem(lstm, T, B, rng, lengths)
    y, (h, c), cache = lstm.forward_train(x, state, lens)
    dx, (dh0, dc0), grads = lstm.backward(cache, dy, dstate)
    ref = reference_run(lstm, x, state, lens, dy, dstate)
    tol = tolerances(dtype)
    for got, want in zip((y, h, c, dx, dh0, dc0), ref[:6]):
        assert got.dtype == lstm.dtype
        assert_allclose(got, want, **tol)
    assert list(grads) == list(lstm.state_dict())
    for name, g in grads.items():
        assert_allclose(g, ref[6][name], **tol, err_msg=name)
    y2, (h2, c2) = lstm(x, state, lens)
    assert_allclose(y2, y, **tol)
    assert_allclose(h2, h, **tol)
    assert_allclose(c2, c, **tol)


def test_batch_first_no_bias_zero_state():
    lstm = lstmx.LSTM(I, H, num_layers=2, bias=False, batch_first=True, dtype=np.float64,
                      seed=0, reverse=True)
    rng = np.random.default_rng(0)
    x, _, lens, dy, dstate = random_problem(lstm, T, B, rng, lengths=True, state=False)
    y, (h, c), cache = lstm.forward_train(x, None, lens)
    dx, (dh0, dc0), grads = lstm.backward(cache, dy, dstate)
    ref = reference_run(lstm, x, None, lens, dy, dstate)
    for got, want in zip((y, h, c, dx, dh0, dc0), ref[:6]):
        assert_allclose(got, want, **tolerances(np.float64))
    for name, g in grads.items():
        assert_allclose(g, ref[6][name], **tolerances(np.float64), err_msg=name)


def test_reference_reads_backwards_from_each_last_valid_step():
    """The reference itself, against the equations stepped by hand with LSTMCell's maths."""
    lstm = lstmx.LSTM(I, H, dtype=np.float64, seed=3, reverse=True)
    p = lstm.parameters()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((T, B, I))
    lens = np.array([T, 1, 3, 5])
    y, (h_n, c_n), _ = reference.lstm_forward(p, lstm.config, x, lengths=lens)
    b = p["bias_ih_l0"] + p["bias_hh_l0"]
    for j, n in enumerate(lens):
        h, c = np.zeros((1, H)), np.zeros((1, H))
        for t in range(n - 1, -1, -1):
            h, c, _ = reference.cell_forward(x[t, j:j + 1], h, c, p["weight_ih_l0"],
                                             p["weight_hh_l0"], b)
            assert_allclose(y[t, j], h[0], rtol=1e-13, atol=1e-14)
        assert_array_equal(y[n:, j], 0)
        assert_allclose(h_n[0, j], h[0], rtol=1e-13, atol=1e-14)
        assert_allclose(c_n[0, j], c[0], rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("peephole,proj,layers,lengths", [
    (False, 0, 1, False), (True, 0, 2, True), (False, 2, 2, True), (True, 2, 1, True)])
def test_gradients_against_finite_differences(peephole, proj, layers, lengths):
    lstm = lstmx.LSTM(3, 4, num_layers=layers, proj_size=proj, peephole=peephole,
                      dtype=np.float64, seed=5, reverse=True)
    rng = np.random.default_rng(6)
    x, state, lens, dy, dstate = random_problem(lstm, 5, 3, rng, lengths)
    _, _, cache = lstm.forward_train(x, state, lens)
    dx, (dh0, dc0), grads = lstm.backward(cache, dy, dstate)

    def f():
        y, (h, c) = lstm(x, state, lens)
        return np.sum(y * dy) + np.sum(h * dstate[0]) + np.sum(c * dstate[1])

    targets = [("x", x, dx), ("h0", state[0], dh0), ("c0", state[1], dc0)]
    targets += [(name, arr, grads[name]) for name, arr in lstm.parameters().items()]
    for name, arr, grad in targets:
        v = rng.standard_normal(arr.shape)
        numeric, analytic = directional_fd(f, arr, v), np.sum(grad * v)
        assert abs(numeric - analytic) <= FD_RTOL * max(1.0, abs(analytic)), (
            f"{name}: finite difference {numeric!r} vs backward {analytic!r}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("peephole,proj", [(False, 0), (True, 2)])
def test_equals_reverse_half_of_a_bidirectional_layer(dtype, peephole, proj):
    bi = lstmx.LSTM(I, H, bidirectional=True, peephole=peephole, proj_size=proj, dtype=dtype,
                    seed=7)
    rev = lstmx.LSTM(I, H, peephole=peephole, proj_size=proj, dtype=dtype, seed=0,
                     reverse=True)
    rev.load_state_dict({k: bi.state_dict()[k + "_reverse"] for k in rev.state_dict()})
    rng = np.random.default_rng(8)
    x, (h0, c0), lens, dy, dstate = random_problem(bi, T, B, rng, lengths=True)
    Hout = bi.config.output_size
    y_bi, (h_bi, c_bi), cache_bi = bi.forward_train(x, (h0, c0), lens)
    y, (h, c), cache = rev.forward_train(x, (h0[1:], c0[1:]), lens)
    # The same kernels on the same numbers: equal, not just close.
    assert_array_equal(y, y_bi[..., Hout:])
    assert_array_equal(h, h_bi[1:])
    assert_array_equal(c, c_bi[1:])
    dy[..., :Hout] = 0
    dstate[0][0] = 0
    dstate[1][0] = 0
    dx_bi, (dh_bi, dc_bi), g_bi = bi.backward(cache_bi, dy, dstate)
    dx, (dh, dc), g = rev.backward(cache, dy[..., Hout:], (dstate[0][1:], dstate[1][1:]))
    tol = tolerances(dtype)
    assert_allclose(dx, dx_bi, **tol)  # (the forward half adds exact zeros to dx)
    assert_array_equal(dh, dh_bi[1:])
    assert_array_equal(dc, dc_bi[1:])
    for name, value in g.items():
        assert_array_equal(value, g_bi[name + "_reverse"], err_msg=name)


@settings(max_examples=25, deadline=None)
@given(seq_len=st.integers(1, 7), batch=st.integers(1, 5), layers=st.integers(1, 3),
       peephole=st.booleans(), proj=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_reverse_is_forward_over_each_sequence_flipped_within_its_length(
        seq_len, batch, layers, peephole, proj, seed):
    """An oracle independent of the reverse code paths: flipping x[:n] of each sequence,
    running forwards and flipping y[:n] back gives the reversed stack's y (every layer
    reads its input flipped the same way)."""
    rng = np.random.default_rng(seed)
    options = dict(num_layers=layers, peephole=peephole, proj_size=2 * proj,
                   dtype=np.float64)
    rev = lstmx.LSTM(3, 4, seed=seed, reverse=True, **options)
    fwd = lstmx.LSTM(3, 4, seed=0, **options)
    fwd.load_state_dict(rev.state_dict())
    x = rng.standard_normal((seq_len, batch, 3))
    lens = rng.integers(1, seq_len + 1, size=batch)
    flipped = x.copy()
    for b, n in enumerate(lens):
        flipped[:n, b] = x[:n, b][::-1]
    y, (h, c) = rev(x, lengths=lens)
    y_f, (h_f, c_f) = fwd(flipped, lengths=lens)
    for b, n in enumerate(lens):
        assert_allclose(y[:n, b], y_f[:n, b][::-1], **tolerances(np.float64))
        assert_array_equal(y[n:, b], 0)
    assert_allclose(h, h_f, **tolerances(np.float64))
    assert_allclose(c, c_f, **tolerances(np.float64))


def test_reverse_differs_from_forward():
    fwd = lstmx.LSTM(I, H, num_layers=2, seed=9)
    rev = lstmx.LSTM(I, H, num_layers=2, seed=9, reverse=True)
    x = np.random.default_rng(9).standard_normal((T, B, I)).astype(np.float32)
    assert not np.allclose(fwd(x)[0], rev(x)[0])
    # Running forwards over the time-flipped input and flipping the output back is the same.
    y, (h, c) = rev(x)
    y_f, (h_f, c_f) = fwd(x[::-1].copy())
    assert_allclose(y, y_f[::-1], **tolerances(np.float32))
    assert_allclose(h, h_f, **tolerances(np.float32))


# --- options, repr, state_dict ---------------------------------------------------------------

def test_bad_values_are_refused_naming_reverse():
    with pytest.raises(TypeError, match="reverse must be a bool; got str 'yes'"):
        lstmx.LSTM(I, H, reverse="yes")
    with pytest.raises(TypeError, match="reverse must be a bool"):
        lstmx.LSTMConfig(I, H, reverse=1)
    with pytest.raises(ValueError, match="reverse=True.*bidirectional=True"):
        lstmx.LSTM(I, H, bidirectional=True, reverse=True)


def test_repr_and_parameter_names():
    rev = lstmx.LSTM(I, H, num_layers=2, reverse=True, seed=0)
    assert repr(rev) == f"LSTM({I}, {H}, num_layers=2, reverse=True, dtype=float32)"
    assert repr(lstmx.LSTM(I, H)) == f"LSTM({I}, {H}, dtype=float32)"
    assert list(rev.state_dict()) == list(lstmx.LSTM(I, H, num_layers=2).state_dict())
    assert rev.config.reverse is True and lstmx.LSTM(I, H).config.reverse is False


def test_pickle_keeps_reverse():
    import pickle
    rev = lstmx.LSTM(I, H, reverse=True, seed=0)
    back = pickle.loads(pickle.dumps(rev))
    assert back.config == rev.config
    x = np.ones((T, B, I), np.float32)
    assert_array_equal(back(x)[0], rev(x)[0])


# --- saving ---------------------------------------------------------------------------------

def test_io_round_trip(tmp_path):
    rev = lstmx.LSTM(I, H, num_layers=2, peephole=True, reverse=True, seed=1)
    path = tmp_path / "rev.npz"
    lstmx.save(rev, path)
    back = lstmx.load(path)
    assert back.config == rev.config and back.config.reverse
    x = np.random.default_rng(1).standard_normal((T, B, I)).astype(np.float32)
    assert_array_equal(back(x)[0], rev(x)[0])
    with pytest.raises(ValueError, match="cannot be loaded into"):
        lstmx.load(path, into=lstmx.LSTM(I, H, num_layers=2, peephole=True))


def rewrite_header(path, edit):
    """The archive at ``path`` with its header's config changed by ``edit``."""
    with np.load(path) as f:
        arrays = dict(f)
    meta = json.loads(str(arrays["__lstmx__"]))
    edit(meta["config"])
    arrays["__lstmx__"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)


def test_archives_written_before_the_option_load_as_forward(tmp_path):
    lstm = lstmx.LSTM(I, H, num_layers=2, seed=2)
    path = tmp_path / "old.npz"
    lstmx.save(lstm, path)
    rewrite_header(path, lambda config: config.pop("reverse"))
    with zipfile.ZipFile(path) as z:
        assert b'"reverse"' not in z.read("__lstmx__.npy")
    back = lstmx.load(path)
    assert back.config == lstm.config and back.config.reverse is False
    lstmx.load(path, into=lstmx.LSTM(I, H, num_layers=2))
    cell_path = tmp_path / "cell.npz"
    lstmx.save(lstmx.LSTMCell(I, H, seed=0), cell_path)
    rewrite_header(cell_path, lambda config: config.pop("reverse"))
    assert isinstance(lstmx.load(cell_path), lstmx.LSTMCell)


@pytest.mark.parametrize("value, message", [
    ("yes", "reverse must be a bool"),
    (True, "an LSTMCell has only the options"),
])
def test_bad_reverse_in_an_archive_is_refused(tmp_path, value, message):
    path = tmp_path / "bad.npz"
    model = lstmx.LSTMCell(I, H) if value is True else lstmx.LSTM(I, H)
    lstmx.save(model, path)
    rewrite_header(path, lambda config: config.update(reverse=value))
    with pytest.raises(ValueError, match=message):
        lstmx.load(path)


def test_reverse_with_bidirectional_in_an_archive_is_refused(tmp_path):
    path = tmp_path / "bad.npz"
    lstmx.save(lstmx.LSTM(I, H, bidirectional=True), path)
    rewrite_header(path, lambda config: config.update(reverse=True))
    with pytest.raises(ValueError, match="invalid LSTM configuration: reverse=True"):
        lstmx.load(path)


def test_checkpoint_round_trip_and_old_records(tmp_path):
    from lstmx import checkpoint
    rev = lstmx.LSTM(I, H, reverse=True, seed=3)
    path = tmp_path / "ck.npz"
    checkpoint.save(path, modules={"lstm": rev})
    restored = checkpoint.load(path)["modules"]["lstm"]
    assert restored.config == rev.config
    with pytest.raises(ValueError, match="cannot be loaded into"):
        checkpoint.load(path, modules={"lstm": lstmx.LSTM(I, H)})
    # A checkpoint written before the option existed: its LSTM is a forward one.
    fwd = lstmx.LSTM(I, H, seed=4)
    checkpoint.save(path, modules={"lstm": fwd})
    with np.load(path) as f:
        arrays = dict(f)
    meta = json.loads(str(arrays[checkpoint.HEADER]))
    del meta["modules"]["lstm"]["config"]["reverse"]
    arrays[checkpoint.HEADER] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    assert checkpoint.load(path)["modules"]["lstm"].config == fwd.config
    into = lstmx.LSTM(I, H)
    checkpoint.load(path, modules={"lstm": into})
    assert_array_equal(into.weight_ih_l0, fwd.weight_ih_l0)


# --- converters -----------------------------------------------------------------------------

def run_ort(model, feeds):
    ort = require("onnxruntime")
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


# Two implementations of the same float32 operations in different orders (as in test_interop).
ORT_CLOSE = dict(rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layers, peephole, bias, act, batch_first", [
    (1, False, True, "tanh", False), (2, True, True, "identity", False),
    (2, False, False, "tanh", True), (3, True, True, "tanh", False)])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_onnx_export_runs_in_onnxruntime(layers, peephole, bias, act, batch_first,
                                         with_lengths):
    require("onnx")
    from lstmx.interop import from_onnx, to_onnx
    model = lstmx.LSTM(I, H, num_layers=layers, peephole=peephole, bias=bias,
                       output_activation=act, batch_first=batch_first, seed=12, reverse=True)
    rng = np.random.default_rng(13)
    x, (h0, c0), lens, _, _ = random_problem(model, T, B, rng, lengths=with_lengths)
    if with_lengths:
        lens[0] = T  # one full and (most likely) some shorter sequences
    onnx_model = to_onnx(model, initial_state=True, sequence_lens=with_lengths)
    assert {a.s for n in onnx_model.graph.node if n.op_type == "LSTM"
            for a in n.attribute if a.name == "direction"} == {b"reverse"}
    lead = (lambda a: a.swapaxes(0, 1)) if batch_first else (lambda a: a)
    feeds = {"X": x, "initial_h": lead(h0), "initial_c": lead(c0)}
    if with_lengths:
        feeds["sequence_lens"] = lens.astype(np.int32)
    Y, Y_h, Y_c = run_ort(onnx_model, feeds)
    y, (h, c) = model(x, (h0, c0), lens)
    Y = Y.reshape(B, T, H) if batch_first else Y.reshape(T, B, H)  # (D = 1)
    assert_allclose(y, Y, **ORT_CLOSE)
    assert_allclose(h, lead(Y_h), **ORT_CLOSE)
    assert_allclose(c, lead(Y_c), **ORT_CLOSE)
    back = from_onnx(onnx_model)
    assert back.config == model.config
    for name, value in model.state_dict().items():
        assert_array_equal(back.state_dict()[name], value, err_msg=name)


def lone_reverse_graph(rng, layers=1, directions=None):
    """ONNX LSTM nodes written by hand, as ONNX's backend tests write a reverse node:
    stacked through a Squeeze of the direction axis."""
    from onnx import TensorProto, helper, numpy_helper
    directions = directions or ["reverse"] * layers
    nodes, inits, x = [], [], "X"
    for k, direction in enumerate(directions):
        size = I if k == 0 else H
        for name, shape in (("W", (1, 4 * H, size)), ("R", (1, 4 * H, H)), ("B", (1, 8 * H)),
                            ("P", (1, 3 * H))):
            inits.append(numpy_helper.from_array(
                rng.uniform(-0.5, 0.5, shape).astype(np.float32), f"{name}{k}"))
        y = "Y" if k == len(directions) - 1 else f"Y{k}"
        nodes.append(helper.make_node(
            "LSTM", [x, f"W{k}", f"R{k}", f"B{k}", "sequence_lens", "", "", f"P{k}"],
            [y, f"Y_h{k}", f"Y_c{k}"], hidden_size=H, direction=direction))
        if k < len(directions) - 1:
            x = f"X{k + 1}"
            nodes.append(helper.make_node("Squeeze", [y, "axis1"], [x]))
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "lone_reverse", [helper.make_tensor_value_info("X", f, [T, B, I]),
                                helper.make_tensor_value_info("sequence_lens",
                                                              TensorProto.INT32, [B])],
        [helper.make_tensor_value_info(n, f, None)
         for n in ["Y"] + [f"Y_h{k}" for k in range(len(directions))]], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("layers", [1, 2])
def test_onnx_lone_reverse_nodes_import_as_a_reversed_model(layers):
    require("onnx")
    from lstmx.interop import from_onnx
    rng = np.random.default_rng(14)
    proto = lone_reverse_graph(rng, layers)
    model = from_onnx(proto)
    assert model.config.reverse and not model.config.bidirectional
    assert model.config.num_layers == layers and model.config.peephole
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    lens = np.array([T, 1, 4, 2])
    Y, *Y_h = run_ort(proto, {"X": x, "sequence_lens": lens.astype(np.int32)})
    y, (h, _) = model(x, lengths=lens)
    assert_allclose(y, Y.reshape(T, B, H), **ORT_CLOSE)
    for k in range(layers):
        assert_allclose(h[k], Y_h[k][0], **ORT_CLOSE)


def test_onnx_mixed_forward_and_reverse_stack_is_refused():
    require("onnx")
    from lstmx.interop import from_onnx
    proto = lone_reverse_graph(np.random.default_rng(15), directions=["forward", "reverse"])
    with pytest.raises(ValueError, match="or every layer must be a lone 'reverse' node"):
        from_onnx(proto)


def test_torch_has_no_reversed_lstm():
    require("torch")
    from lstmx.interop import from_torch, to_torch
    with pytest.raises(ValueError, match="reverse=True"):
        to_torch(lstmx.LSTM(I, H, reverse=True))
    # The state dict is PyTorch's, so from_torch of it gives a forward model, as documented.
    rev = lstmx.LSTM(I, H, reverse=True, seed=0)
    assert from_torch(rev.state_dict()).config.reverse is False


def test_tf1_cells_have_no_direction():
    from lstmx.interop import to_tf1
    with pytest.raises(ValueError, match="reverse=True"):
        to_tf1(lstmx.LSTM(I, H, reverse=True), forget_bias=0.0)


def test_keras_go_backwards_is_refused_both_ways(monkeypatch):
    from lstmx.interop import from_keras_weights, to_keras_weights
    with pytest.raises(ValueError, match="reverse=True.*go_backwards=True"):
        to_keras_weights(lstmx.LSTM(I, H, reverse=True))
    monkeypatch.setenv("KERAS_BACKEND", "torch")  # (if keras is not imported yet)
    keras = require("keras")
    layer = keras.layers.LSTM(H, go_backwards=True, return_sequences=True)
    x = np.random.default_rng(16).standard_normal((B, T, I)).astype(np.float32)
    layer(x)
    with pytest.raises(ValueError, match="go_backwards=True: it returns its outputs in "
                                         "reversed time order"):
        from_keras_weights(layer)


def test_keras_go_backwards_is_reverse_with_its_output_flipped_in_time(monkeypatch):
    """Why the Keras converters refuse it: the same weights compute the same states, but
    Keras returns y_t at position T-1-t."""
    monkeypatch.setenv("KERAS_BACKEND", "torch")  # (if keras is not imported yet)
    keras = require("keras")
    from lstmx.interop import to_keras_weights
    rev = lstmx.LSTM(I, H, batch_first=True, seed=17, reverse=True)
    fwd = lstmx.LSTM(I, H, batch_first=True, seed=0)
    fwd.load_state_dict(rev.state_dict())
    layer = keras.layers.LSTM(H, go_backwards=True, return_sequences=True)
    x = np.random.default_rng(18).standard_normal((B, T, I)).astype(np.float32)
    layer(x)
    layer.set_weights(to_keras_weights(fwd)[0])
    out = layer(x)
    out = out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)
    y, _ = rev(x)
    assert not np.allclose(out, y, **ORT_CLOSE)
    assert_allclose(out[:, ::-1], y, **ORT_CLOSE)
