"""The regularised reference (lstmx.reference_regularised): the plain reference with every
option off, finite differences of its backward with fixed masks, and torch as the oracle of
the layer-normalised cell."""
import numpy as np
import pytest

from lstmx import _masks, reference, reference_regularised as rr
from lstmx._config import LSTMConfig

from _helpers import FD_EPS, require

OPTIONS = [
    dict(),
    dict(cell_clip=0.4),
    dict(zoneout=(0.3, 0.5)),
    dict(recurrent_dropout=0.4),
    dict(dropout=0.5, num_layers=2),
    dict(layer_norm=True),
    dict(layer_norm=True, peephole=True, proj_size=2, cell_clip=0.5, zoneout=0.3,
         recurrent_dropout=0.3, dropout=0.4, num_layers=2, bidirectional=True),
    dict(layer_norm=True, output_activation="identity", reverse=True, zoneout=(0.2, 0.0)),
]


def _problem(cfg, T, B, seed, lengths=True):
    rng = np.random.default_rng(seed)
    p = cfg.init_parameters(seed)
    for name in p:  # layer-norm parameters away from 1 and 0, so their gradients show
        if name.startswith("layer_norm_"):
            p[name] = p[name] + rng.uniform(-0.5, 0.5, p[name].shape)
    LD = cfg.num_layers * cfg.num_directions
    x = rng.standard_normal((T, B, cfg.input_size))
    h0 = rng.standard_normal((LD, B, cfg.output_size))
    c0 = rng.standard_normal((LD, B, cfg.hidden_size))
    lens = rng.integers(1, T + 1, size=B) if lengths else None
    dy = rng.standard_normal((T, B, cfg.num_directions * cfg.output_size))
    dh, dc = rng.standard_normal(h0.shape), rng.standard_normal(c0.shape)
    return p, x, h0, c0, lens, dy, dh, dc


def test_options_off_is_the_plain_reference():
    cfg = LSTMConfig(3, 4, 2, bidirectional=True, proj_size=2, peephole=True,
                     dtype=np.float64)
    p, x, h0, c0, lens, dy, dh, dc = _problem(cfg, 5, 3, 0)
    y0, (h_0, c_0), s0 = reference.lstm_forward(p, cfg, x, h0, c0, lens)
    y1, (h_1, c_1), s1 = rr.lstm_forward(p, cfg, x, h0, c0, lens)
    np.testing.assert_allclose(y1, y0, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(c_1, c_0, rtol=1e-13, atol=1e-14)
    g0 = reference.lstm_backward(p, cfg, s0, dy, dh, dc)
    g1 = rr.lstm_backward(p, cfg, s1, dy, dh, dc)
    np.testing.assert_allclose(g1[0], g0[0], rtol=1e-12, atol=1e-13)
    for name in g0[2]:
        np.testing.assert_allclose(g1[2][name], g0[2][name], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("options", OPTIONS)
def test_reference_gradients_finite_differences(options):
    cfg = LSTMConfig(3, 4, dtype=np.float64, **options)
    T, B = 4, 3
    p, x, h0, c0, lens, dy, dh, dc = _problem(cfg, T, B, 1)
    masks = _masks.draw(cfg, T, B, 7)

    def loss():
        y, (h, c), _ = rr.lstm_forward(p, cfg, x, h0, c0, lens, masks)
        return (y * dy).sum() + (h * dh).sum() + (c * dc).sum()

    _, _, saved = rr.lstm_forward(p, cfg, x, h0, c0, lens, masks)
    dx, (dh0, dc0), grads = rr.lstm_backward(p, cfg, saved, dy, dh, dc)
    rng = np.random.default_rng(2)
    for arr, grad in [(x, dx), (h0, dh0), (c0, dc0)] + [(p[n], grads[n]) for n in p]:
        v = rng.standard_normal(arr.shape)
        saved_arr = arr.copy()
        arr += FD_EPS * v
        up = loss()
        arr[...] = saved_arr - FD_EPS * v
        down = loss()
        arr[...] = saved_arr
        np.testing.assert_allclose((grad * v).sum(), (up - down) / (2 * FD_EPS),
                                   rtol=1e-6, atol=1e-8)


def test_inference_is_zoneouts_expectation():
    cfg = LSTMConfig(2, 3, zoneout=(0.25, 0.5), dtype=np.float64)
    p, x, h0, c0, _, _, _, _ = _problem(cfg, 1, 2, 3, lengths=False)
    y, (h, c), _ = rr.lstm_forward(p, cfg, x, h0, c0)
    plain = LSTMConfig(2, 3, dtype=np.float64)
    y0, (h_, c_), _ = reference.lstm_forward(p, plain, x, h0, c0)
    np.testing.assert_allclose(c[0], 0.25 * c0[0] + 0.75 * c_[0], rtol=1e-14)
    np.testing.assert_allclose(h[0], 0.5 * h0[0] + 0.5 * h_[0], rtol=1e-14)


def test_layer_norm_cell_against_torch():
    torch = require("torch")
    cfg = LSTMConfig(3, 4, layer_norm=True, peephole=True, cell_clip=0.6,
                     dtype=np.float64)
    T, B = 3, 2
    p, x, h0, c0, _, dy, dh, dc = _problem(cfg, T, B, 4, lengths=False)
    y, (h_n, c_n), saved = rr.lstm_forward(p, cfg, x, h0, c0)
    dx, (dh0, dc0), grads = rr.lstm_backward(p, cfg, saved, dy, dh, dc)

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    tx, th0, tc0 = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    H = cfg.hidden_size

    def ln(v, name):
        return torch.nn.functional.layer_norm(v, (v.shape[-1],), tp[name + "_weight_l0"],
                                              tp[name + "_bias_l0"], eps=1e-5)

    h, c, ys = th0[0], tc0[0], []
    for t in range(T):
        z = (ln(tx[t] @ tp["weight_ih_l0"].T, "layer_norm_ih")
             + ln(h @ tp["weight_hh_l0"].T, "layer_norm_hh")
             + tp["bias_ih_l0"] + tp["bias_hh_l0"])
        zi, zf, zg, zo = z.split(H, dim=-1)
        i = torch.sigmoid(zi + tp["weight_ci_l0"] * c)
        f = torch.sigmoid(zf + tp["weight_cf_l0"] * c)
        c = torch.clamp(f * c + i * torch.tanh(zg), -0.6, 0.6)
        o = torch.sigmoid(zo + tp["weight_co_l0"] * c)
        h = o * torch.tanh(ln(c, "layer_norm_c"))
        ys.append(h)
    ty = torch.stack(ys)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-13)
    loss = ((ty * torch.tensor(dy)).sum() + (h * torch.tensor(dh[0])).sum()
            + (c * torch.tensor(dc[0])).sum())
    loss.backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dh0, th0.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dc0, tc0.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, value in grads.items():
        np.testing.assert_allclose(value, tp[name].grad.numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=name)
