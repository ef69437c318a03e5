"""Agreement with torch.nn.LSTM / LSTMCell: forward, final state and autograd gradients.

CI installs torch (2.13.0, CPU); elsewhere these tests skip when torch is absent.
"""
import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose

import lstmx
from _helpers import random_problem

TOL = {np.float32: dict(rtol=1e-4, atol=1e-5), np.float64: dict(rtol=1e-9, atol=1e-12)}


def torch_lstm(torch, lstm):
    cfg = lstm.config
    dtype = torch.float32 if cfg.dtype == np.float32 else torch.float64
    module = torch.nn.LSTM(cfg.input_size, cfg.hidden_size, num_layers=cfg.num_layers,
                           bias=cfg.bias, batch_first=cfg.batch_first,
                           bidirectional=cfg.bidirectional, proj_size=cfg.proj_size,
                           dtype=dtype)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in lstm.state_dict().items()})
    return module


def torch_run(torch, module, x, state, lengths, dy, dstate, batch_first):
    xt = torch.tensor(x, requires_grad=True)
    h0 = torch.tensor(state[0], requires_grad=True)
    c0 = torch.tensor(state[1], requires_grad=True)
    T = x.shape[1] if batch_first else x.shape[0]
    if lengths is not None:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False)
        y, (h, c) = module(packed, (h0, c0))
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=batch_first,
                                                      total_length=T)
    else:
        y, (h, c) = module(xt, (h0, c0))
    loss = ((y * torch.from_numpy(dy)).sum() + (h * torch.from_numpy(dstate[0])).sum()
            + (c * torch.from_numpy(dstate[1])).sum())
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    return (y.detach().numpy(), h.detach().numpy(), c.detach().numpy(), xt.grad.numpy(),
            h0.grad.numpy(), c0.grad.numpy(), grads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "num_layers,bidirectional,batch_first,lengths,bias,proj",
    [(L, bi, bf, ln, b, 0) for L, bi, bf, ln, b in itertools.product(
        [1, 2, 3], [False, True], [False, True], [False, True], [True, False])]
    + [(L, bi, False, True, True, 3) for L, bi in itertools.product([1, 2], [False, True])])
def test_lstm_matches_torch(torch, dtype, num_layers, bidirectional, batch_first, lengths,
                            bias, proj):
    lstm = lstmx.LSTM(5, 6, num_layers=num_layers, bias=bias, batch_first=batch_first,
                      bidirectional=bidirectional, proj_size=proj, dtype=dtype, seed=7)
    rng = np.random.default_rng(8)
    x, state, lens, dy, dstate = random_problem(lstm, 6, 4, rng, lengths)
    y, (h, c), cache = lstm.forward_train(x, state, lens)
    dx, (dh0, dc0), grads = lstm.backward(cache, dy, dstate)
    ref = torch_run(torch, torch_lstm(torch, lstm), x, state, lens, dy, dstate, batch_first)
    for name, got, want in zip(["y", "h_n", "c_n", "dx", "dh0", "dc0"],
                               [y, h, c, dx, dh0, dc0], ref[:6]):
        assert_allclose(got, want, **TOL[dtype], err_msg=name)
    assert set(grads) == set(ref[6])
    for name, g in grads.items():
        assert_allclose(g, ref[6][name], **TOL[dtype], err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_keys_and_shapes_match_torch(torch, dtype):
    for kw in [dict(), dict(num_layers=3, bidirectional=True, proj_size=2), dict(bias=False)]:
        lstm = lstmx.LSTM(5, 6, dtype=dtype, **kw)
        module = torch.nn.LSTM(5, 6, **kw)
        want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        got = {k: v.shape for k, v in lstm.state_dict().items()}
        assert list(got) == list(want)
        assert got == want


def test_load_state_dict_accepts_torch_tensors(torch):
    module = torch.nn.LSTM(3, 4, num_layers=2)
    lstm = lstmx.LSTM(3, 4, num_layers=2, dtype=np.float64)
    lstm.load_state_dict(module.state_dict())
    for k, v in module.state_dict().items():
        assert_allclose(lstm.parameters()[k], v.numpy().astype(np.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cell_matches_torch(torch, dtype):
    cell = lstmx.LSTMCell(5, 6, dtype=dtype, seed=3)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    module = torch.nn.LSTMCell(5, 6, dtype=tdtype)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in cell.state_dict().items()})
    assert list(cell.state_dict()) == list(module.state_dict())
    rng = np.random.default_rng(4)
    x, h, c, dh, dc = (rng.standard_normal(s).astype(dtype)
                       for s in [(3, 5), (3, 6), (3, 6), (3, 6), (3, 6)])
    (h1, c1), cache = cell.forward_train(x, (h, c))
    dx, (dh0, dc0), grads = cell.backward(cache, (dh, dc))
    xt, ht, ct = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    h1t, c1t = module(xt, (ht, ct))
    ((h1t * torch.from_numpy(dh)).sum() + (c1t * torch.from_numpy(dc)).sum()).backward()
    for got, want in [(h1, h1t), (c1, c1t)]:
        assert_allclose(got, want.detach().numpy(), **TOL[dtype])
    for got, want in [(dx, xt.grad), (dh0, ht.grad), (dc0, ct.grad)]:
        assert_allclose(got, want.numpy(), **TOL[dtype])
    for name, p in module.named_parameters():
        assert_allclose(grads[name], p.grad.numpy(), **TOL[dtype], err_msg=name)
