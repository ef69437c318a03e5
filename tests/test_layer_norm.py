"""The layer-normalised LSTM in the kernels against PyTorch: torch.nn.LayerNorm modules and
tensor ops in a Python loop (the only way torch users have one), forward and gradients by
autograd; and that saving, pickling and loading keep the layer-norm parameters."""
import io
import pickle

import numpy as np
import pytest

import lstmx
from lstmx import LSTM

from _helpers import require, tolerances


def _torch_layer_norm_lstm(torch, lstm, x, h0, c0):
    """The layer-norm LSTM of lstm's one layer, from torch modules; returns y, h_n, c_n and
    the parameter tensors by name."""
    cfg = lstm.config
    H = cfg.hidden_size
    dt = torch.float64
    p = {k: torch.tensor(v.astype(np.float64), requires_grad=True)
         for k, v in lstm.parameters().items()}
    norms = {}
    for part, n in (("ih", 4 * H), ("hh", 4 * H), ("c", H)):
        norm = torch.nn.LayerNorm(n, eps=1e-5, dtype=dt)
        with torch.no_grad():
            norm.weight.copy_(p[f"layer_norm_{part}_weight_l0"])
            norm.bias.copy_(p[f"layer_norm_{part}_bias_l0"])
        norms[part] = norm
    h, c, ys = h0[0], c0[0], []
    for t in range(x.shape[0]):
        z = (norms["ih"](x[t] @ p["weight_ih_l0"].T) + norms["hh"](h @ p["weight_hh_l0"].T)
             + p["bias_ih_l0"] + p["bias_hh_l0"])
        zi, zf, zg, zo = z.split(H, dim=-1)
        pi, pf, po = ((p["weight_ci_l0"], p["weight_cf_l0"], p["weight_co_l0"])
                      if cfg.peephole else (0, 0, 0))
        i, f = torch.sigmoid(zi + pi * c), torch.sigmoid(zf + pf * c)
        c = f * c + i * torch.tanh(zg)
        o = torch.sigmoid(zo + po * c)
        n = norms["c"](c)
        h = o * (n if cfg.output_activation == "identity" else torch.tanh(n))
        ys.append(h)
    grads = {}
    for part, norm in norms.items():
        grads[f"layer_norm_{part}_weight_l0"] = norm.weight
        grads[f"layer_norm_{part}_bias_l0"] = norm.bias
    return torch.stack(ys), h, c, p, grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", [dict(), dict(peephole=True),
                                     dict(output_activation="identity")])
def test_layer_norm_lstm_against_torch(options, dtype):
    check_against_torch(options, dtype, 6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("H", [8, 10, 11, 13, 15, 33])
def test_layer_norm_rows_of_every_length_against_torch(H, dtype):
    # On AVX-512 the rows' sums take groups of 8 elements into four accumulators in turn:
    # rows of 4H and H elements that end on each accumulator, with and without fewer than 8
    # left over.
    check_against_torch({}, dtype, H)


def check_against_torch(options, dtype, H):
    torch = require("torch")
    T, B, I = 5, 3, 4
    lstm = LSTM(I, H, layer_norm=True, dtype=dtype, seed=0, **options)
    rng = np.random.default_rng(1)
    for name, value in lstm.parameters().items():
        if name.startswith("layer_norm_"):
            value += rng.uniform(-0.5, 0.5, value.shape).astype(dtype)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0, c0 = (rng.standard_normal((1, B, H)).astype(dtype) for _ in range(2))
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    dh, dc = (rng.standard_normal((1, B, H)).astype(dtype) for _ in range(2))
    y, (h_n, c_n), cache = lstm.forward_train(x, (h0, c0))
    dx, (dh0, dc0), grads = lstm.backward(cache, dy, (dh, dc))

    tx, th0, tc0 = (torch.tensor(a.astype(np.float64), requires_grad=True)
                    for a in (x, h0, c0))
    ty, th, tc, tp, tnorm = _torch_layer_norm_lstm(torch, lstm, tx, th0, tc0)
    tol = tolerances(dtype)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(h_n[0], th.detach().numpy(), **tol)
    np.testing.assert_allclose(c_n[0], tc.detach().numpy(), **tol)
    np.testing.assert_allclose(lstm(x, (h0, c0))[0], y, **tol)
    f64 = (lambda a: torch.tensor(a.astype(np.float64)))
    ((ty * f64(dy)).sum() + (th * f64(dh[0])).sum() + (tc * f64(dc[0])).sum()).backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)
    np.testing.assert_allclose(dh0, th0.grad.numpy(), **tol)
    np.testing.assert_allclose(dc0, tc0.grad.numpy(), **tol)
    for name, value in grads.items():
        ref = tnorm[name] if name in tnorm else tp[name]
        np.testing.assert_allclose(value, ref.grad.numpy(), err_msg=name, **tol)


def test_layer_norm_of_a_constant_row_is_finite():
    # Zero inputs and state: x W^T and h U^T are constant rows (variance 0), which eps keeps
    # finite, as torch.nn.LayerNorm.
    lstm = LSTM(3, 4, layer_norm=True, seed=0, dtype=np.float64)
    x = np.zeros((4, 2, 3))
    y, _, cache = lstm.forward_train(x)
    dx, _, grads = lstm.backward(cache, np.ones_like(y))
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    assert all(np.isfinite(g).all() for g in grads.values())


def test_save_pickle_load_keep_the_options():
    lstm = LSTM(3, 4, 2, layer_norm=True, zoneout=(0.1, 0.2), dropout=0.3, cell_clip=1.5,
                recurrent_dropout=0.2, seed=0)
    lstm.layer_norm_c_weight_l1[:] = 3
    x = np.random.default_rng(0).standard_normal((3, 2, 3)).astype(np.float32)
    buf = io.BytesIO()
    lstmx.save(lstm, buf)
    buf.seek(0)
    loaded = lstmx.load(buf)
    assert loaded.config == lstm.config
    np.testing.assert_array_equal(loaded(x)[0], lstm(x)[0])
    copy = pickle.loads(pickle.dumps(lstm))
    np.testing.assert_array_equal(copy(x)[0], lstm(x)[0])
    copy.layer_norm_c_weight_l1[:] = 1  # the rows are live in the copy too
    assert not np.array_equal(copy(x)[0], lstm(x)[0])
    y, _, cache = lstm.forward_train(x, rng=1)
    again = pickle.loads(pickle.dumps(cache))
    np.testing.assert_array_equal(lstm.backward(again, np.ones_like(y))[0],
                                  lstm.backward(cache, np.ones_like(y))[0])


def test_checkpoint_keeps_the_options():
    from lstmx import LSTMCell, checkpoint
    cell = LSTMCell(3, 4, layer_norm=True, zoneout=(0.1, 0.3), cell_clip=2.0, seed=0)
    cell.layer_norm_c_weight[:] = 2
    lstm = LSTM(3, 4, 2, layer_norm=True, dropout=0.2, zoneout=0.2, seed=0)
    buf = io.BytesIO()
    checkpoint.save(buf, modules={"cell": cell, "lstm": lstm})
    buf.seek(0)
    restored = checkpoint.load(buf)["modules"]
    assert restored["cell"].config == cell.config
    assert restored["lstm"].config == lstm.config
    np.testing.assert_array_equal(restored["cell"].layer_norm_c_weight, 2)
    into = LSTMCell(3, 4, layer_norm=True, zoneout=(0.1, 0.3), cell_clip=2.0)
    buf.seek(0)
    checkpoint.load(buf, modules={"cell": into, "lstm": LSTM(3, 4, 2, layer_norm=True,
                                                             dropout=0.2, zoneout=0.2)})
    np.testing.assert_array_equal(into.layer_norm_c_weight, 2)
    buf.seek(0)
    with pytest.raises(ValueError, match="cannot be loaded"):
        checkpoint.load(buf, modules={"cell": LSTMCell(3, 4), "lstm": lstm})
