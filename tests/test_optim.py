"""Optimisers and clipping against torch.optim and hand-computed updates."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import lstmx
from _helpers import require, tolerances
from lstmx.optim import SGD, Adam, clip_grad_norm

DTYPES = [np.float32, np.float64]


def random_modules(rng, dtype):
    """Two parameter dicts, as two modules' parameters() would be."""
    return [{"weight": rng.standard_normal((3, 4)).astype(dtype),
             "bias": rng.standard_normal(3).astype(dtype)},
            {"weight": rng.standard_normal((2, 5)).astype(dtype)}]


def run_against_torch(make_ours, make_theirs, dtype, steps=5, lr_schedule=None):
    """Apply the same random gradients with both optimisers; compare parameters each step."""
    torch = require("torch")
    rng = np.random.default_rng(0)
    params = random_modules(rng, dtype)
    tensors = [torch.tensor(p.astype(np.float64), requires_grad=True)
               for group in params for p in group.values()]
    ours, theirs = make_ours(params), make_theirs(tensors)
    for step in range(steps):
        if lr_schedule is not None:
            ours.lr = lr_schedule(step)
            for group in theirs.param_groups:
                group["lr"] = lr_schedule(step)
        grads = [{k: rng.standard_normal(v.shape).astype(dtype) for k, v in group.items()}
                 for group in params]
        for t, g in zip(tensors, [g for group in grads for g in group.values()]):
            t.grad = torch.from_numpy(g.astype(np.float64))
        ours.step(grads)
        theirs.step()
        for p, t in zip([p for group in params for p in group.values()], tensors):
            assert p.dtype == dtype
            assert_allclose(p, t.detach().numpy(), **tolerances(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum,nesterov,weight_decay",
                         [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0),
                          (0.5, False, 0.1), (0.0, False, 0.01)])
def test_sgd_matches_torch(dtype, momentum, nesterov, weight_decay):
    torch = require("torch")
    run_against_torch(
        lambda p: SGD(p, lr=0.1, momentum=momentum, nesterov=nesterov,
                      weight_decay=weight_decay),
        lambda t: torch.optim.SGD(t, lr=0.1, momentum=momentum, nesterov=nesterov,
                                  weight_decay=weight_decay),
        dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weight_decay,decoupled",
                         [(0.0, False), (0.1, False), (0.1, True)])
def test_adam_matches_torch(dtype, weight_decay, decoupled):
    torch = require("torch")
    run_against_torch(
        lambda p: Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=weight_decay,
                       decoupled_weight_decay=decoupled),
        lambda t: torch.optim.Adam(t, lr=0.01, betas=(0.8, 0.99), eps=1e-6,
                                   weight_decay=weight_decay,
                                   decoupled_weight_decay=decoupled),
        dtype, steps=8)


def test_adam_learning_rate_schedule_matches_torch():
    torch = require("torch")
    run_against_torch(lambda p: Adam(p, lr=0.1), lambda t: torch.optim.Adam(t, lr=0.1),
                      np.float64, steps=6, lr_schedule=lambda step: 0.1 * 0.5 ** step)


def test_adam_first_step_by_hand():
    # After one step m_hat = g and v_hat = g^2, so p moves by lr * g / (|g| + eps).
    p = np.array([1.0, -2.0, 0.5])
    g = np.array([0.3, -4.0, 0.0])
    Adam({"p": p}, lr=0.1, eps=1e-8).step({"p": g})
    assert_allclose(p, [1.0 - 0.1 * 0.3 / (0.3 + 1e-8), -2.0 + 0.1 * 4.0 / (4.0 + 1e-8), 0.5],
                    rtol=1e-15)


def test_sgd_momentum_by_hand():
    p = np.array([1.0])
    opt = SGD({"p": p}, lr=0.1, momentum=0.9)
    opt.step({"p": np.array([1.0])})  # v = 1
    opt.step({"p": np.array([1.0])})  # v = 1.9
    assert_allclose(p, [1.0 - 0.1 - 0.19], rtol=1e-15)


def test_step_updates_live_module_parameters_and_leaves_grads():
    lstm = lstmx.LSTM(2, 3, seed=0)
    head = lstmx.Linear(3, 1, seed=0)
    before = [lstm.state_dict(), head.state_dict()]
    grads = [{k: np.ones_like(v) for k, v in m.parameters().items()} for m in (lstm, head)]
    SGD([lstm.parameters(), head.parameters()], lr=0.5).step(grads)
    for module, old, g in zip((lstm, head), before, grads):
        for name, value in module.parameters().items():
            assert_allclose(value, old[name] - 0.5, rtol=1e-6)
            assert_array_equal(g[name], 1.0)


def test_optimiser_accepts_a_single_dict():
    p = {"w": np.zeros(2)}
    opt = SGD(p, lr=1.0)
    opt.step({"w": np.ones(2)})
    assert_array_equal(p["w"], -1.0)
    assert opt.steps == 1


def test_optimiser_bad_inputs():
    params = [{"w": np.zeros(2)}, {"b": np.zeros(3)}]
    opt = Adam(params)
    with pytest.raises(ValueError, match="expected 2, got 1"):
        opt.step([{"w": np.zeros(2)}])
    with pytest.raises(KeyError, match=r"grads\[1\] keys do not match"):
        opt.step([{"w": np.zeros(2)}, {"c": np.zeros(3)}])
    with pytest.raises(ValueError, match=r"grads\[1\]\['b'\] must have shape \(3,\)"):
        opt.step([{"w": np.zeros(2)}, {"b": np.zeros(2)}])
    with pytest.raises(TypeError, match=r"grads\[0\]\['w'\] must be a float array"):
        opt.step([{"w": np.zeros(2, int)}, {"b": np.zeros(3)}])
    assert opt.steps == 0  # failed steps change nothing
    assert_array_equal(params[0]["w"], 0)
    shared = np.zeros(2)
    with pytest.raises(ValueError, match="appears twice"):
        SGD([{"a": shared}, {"b": shared}], lr=0.1)
    frozen = np.zeros(2)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        SGD({"a": frozen}, lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\]\['a'\] must be a float NumPy array"):
        SGD({"a": [1.0]}, lr=0.1)
    with pytest.raises(TypeError, match="params must be a dict of arrays"):
        SGD(np.zeros(2), lr=0.1)
    with pytest.raises(ValueError, match="lr must be in"):
        SGD({"a": np.zeros(1)}, lr=-1.0)
    with pytest.raises(ValueError, match="momentum must be in"):
        SGD({"a": np.zeros(1)}, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        SGD({"a": np.zeros(1)}, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"betas\[1\] must be in"):
        Adam({"a": np.zeros(1)}, betas=(0.9, 1.5))
    with pytest.raises(TypeError, match="lr must be a real number"):
        Adam({"a": np.zeros(1)}, lr="fast")


# Clipping -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(dtype, max_norm):
    torch = require("torch")
    rng = np.random.default_rng(0)
    grads = random_modules(rng, dtype)
    tensors = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
               for group in grads for g in group.values()]
    for t, g in zip(tensors, [g for group in grads for g in group.values()]):
        t.grad = torch.from_numpy(g.astype(np.float64))
    norm = clip_grad_norm(grads, max_norm)
    want = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    assert isinstance(norm, float)
    assert_allclose(norm, want.item(), rtol=1e-12)
    for g, t in zip([g for group in grads for g in group.values()], tensors):
        assert g.dtype == dtype
        assert_allclose(g, t.grad.numpy(), **tolerances(dtype))


def test_clip_grad_norm_by_hand():
    grads = [{"a": np.array([3.0, 0.0])}, {"b": np.array([[4.0]])}]
    assert clip_grad_norm(grads, 1.0) == 5.0
    assert_allclose(np.sqrt(np.sum(grads[0]["a"] ** 2) + np.sum(grads[1]["b"] ** 2)),
                    1.0, rtol=1e-6)
    small = {"a": np.array([0.3, 0.4])}
    assert_allclose(clip_grad_norm(small, 1.0), 0.5, rtol=1e-15)
    assert_array_equal(small["a"], [0.3, 0.4])  # below the limit: untouched


def test_clip_grad_norm_bad_inputs():
    with pytest.raises(ValueError, match="max_norm must be in"):
        clip_grad_norm({"a": np.ones(2)}, 0.0)
    with pytest.raises(TypeError, match=r"grads\[0\]\['a'\] must be a float NumPy array"):
        clip_grad_norm({"a": [1.0, 2.0]}, 1.0)
