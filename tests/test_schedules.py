"""Learning-rate schedules against torch.optim.lr_scheduler; optimiser and schedule state dicts."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from _helpers import require
from lstmx.optim import SGD, Adam, CosineAnnealingLR, ReduceLROnPlateau, StepLR


def lr_sequences(make_ours, make_theirs, metrics=None, steps=25):
    torch = require("torch")
    ours_opt = SGD({"w": np.zeros(2)}, lr=0.1)
    theirs_opt = torch.optim.SGD([torch.zeros(2, requires_grad=True)], lr=0.1)
    ours, theirs = make_ours(ours_opt), make_theirs(theirs_opt, torch)
    got, want = [ours_opt.lr], [theirs_opt.param_groups[0]["lr"]]
    for t in range(steps):
        theirs_opt.step()  # no gradient: a no-op, in the order torch expects
        if metrics is None:
            ours.step()
            theirs.step()
        else:
            ours.step(metrics[t])
            theirs.step(metrics[t])
        got.append(ours_opt.lr)
        want.append(theirs_opt.param_groups[0]["lr"])
    return np.array(got), np.array(want)


def test_step_lr_matches_torch():
    got, want = lr_sequences(lambda o: StepLR(o, step_size=3, gamma=0.5),
                             lambda o, torch: torch.optim.lr_scheduler.StepLR(o, 3, 0.5))
    assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("eta_min", [0.0, 0.01])
def test_cosine_annealing_matches_torch(eta_min):
    # Past T_max too: both go back up. (PyTorch updates recursively, lstmx in closed form:
    # the same numbers up to rounding.)
    got, want = lr_sequences(
        lambda o: CosineAnnealingLR(o, T_max=10, eta_min=eta_min),
        lambda o, torch: torch.optim.lr_scheduler.CosineAnnealingLR(o, 10, eta_min))
    assert_allclose(got, want, rtol=1e-9, atol=1e-15)
    assert got[10] == pytest.approx(eta_min, abs=1e-15)


@pytest.mark.parametrize("kwargs", [
    dict(patience=2), dict(patience=1, cooldown=2, factor=0.5),
    dict(mode="max", patience=0, threshold_mode="abs", threshold=0.05, min_lr=0.02)])
def test_reduce_on_plateau_matches_torch(kwargs):
    metrics = np.concatenate([np.linspace(1, 0.5, 6), np.full(8, 0.5),
                              np.linspace(0.5, 0.4, 5), np.full(6, 0.45)]).tolist()
    got, want = lr_sequences(
        lambda o: ReduceLROnPlateau(o, **kwargs),
        lambda o, torch: torch.optim.lr_scheduler.ReduceLROnPlateau(o, **kwargs),
        metrics=metrics)
    assert_allclose(got, want, rtol=1e-12)
    assert len(set(got)) > 1  # the schedule did act


def test_schedule_state_dict_resumes():
    opt = Adam({"w": np.zeros(2)}, lr=0.1)
    sched = ReduceLROnPlateau(opt, patience=1)
    for m in [1.0, 0.9, 0.95, 0.97]:
        sched.step(m)
    state, lr = sched.state_dict(), opt.lr
    opt2 = Adam({"w": np.zeros(2)}, lr=0.1)
    other = ReduceLROnPlateau(opt2, patience=5)
    other.load_state_dict(state)
    opt2.lr = lr
    for m in [0.96, 0.98, 0.99]:
        sched.step(m)
        other.step(m)
        assert opt.lr == opt2.lr
    with pytest.raises(ValueError, match="of a 'ReduceLROnPlateau' schedule, not 'StepLR'"):
        StepLR(opt, 2).load_state_dict(state)


@pytest.mark.parametrize("make", [
    lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
    lambda p: Adam(p, lr=0.01, betas=(0.8, 0.99), decoupled_weight_decay=True,
                   weight_decay=0.1)])
def test_optimiser_state_dict_resumes_bit_for_bit(make):
    rng = np.random.default_rng(0)
    grads = [{"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(3)}
             for _ in range(6)]
    init = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(3)}
    whole = {k: v.copy() for k, v in init.items()}
    opt = make(whole)
    for g in grads:
        opt.step(g)
    part = {k: v.copy() for k, v in init.items()}
    opt = make(part)
    for g in grads[:3]:
        opt.step(g)
    state = opt.state_dict()
    opt.step(grads[3])  # the state dict holds copies: later steps do not reach it
    resumed = {k: v.copy() for k, v in part.items()}
    fresh = make(resumed)
    part_after_3 = {k: v.copy() for k, v in init.items()}
    replay = make(part_after_3)
    for g in grads[:3]:
        replay.step(g)
    fresh_params = fresh.params[0]
    for k in fresh_params:
        fresh_params[k][...] = part_after_3[k]
    fresh.load_state_dict(state)
    assert fresh.steps == 3
    for g in grads[3:]:
        fresh.step(g)
    for k in whole:
        assert_array_equal(fresh_params[k], whole[k])


def test_optimiser_load_state_dict_checks_everything_first():
    opt = Adam({"w": np.zeros(3)}, lr=0.1)
    opt.step({"w": np.ones(3)})
    state = opt.state_dict()
    other = Adam({"w": np.zeros(4)}, lr=0.5)
    with pytest.raises(ValueError, match=r"\['w'\]\['m'\] must be a float array of shape"):
        other.load_state_dict(state)
    assert other.lr == 0.5 and other.steps == 0 and other.state == [{"w": {}}]
    with pytest.raises(ValueError, match="of a 'Adam' optimiser, not 'SGD'"):
        SGD({"w": np.zeros(3)}, lr=0.1).load_state_dict(state)
    with pytest.raises(KeyError, match=r"missing \['eps'\]"):
        Adam({"w": np.zeros(3)}).load_state_dict({k: v for k, v in state.items()
                                                  if k != "eps"})
    bad = dict(state, betas=(0.9, 1.5))
    with pytest.raises(ValueError, match=r"betas\[1\] must be in"):
        Adam({"w": np.zeros(3)}).load_state_dict(bad)


@pytest.mark.parametrize("make,match", [
    (lambda o: StepLR(o, 0), "step_size must be >= 1"),
    (lambda o: CosineAnnealingLR(o, 2.0), "T_max must be an integer"),
    (lambda o: ReduceLROnPlateau(o, mode="up"), "mode must be 'min' or 'max'"),
    (lambda o: ReduceLROnPlateau(o, factor=1.0), r"factor must be in \(0.0, 1.0\)"),
    (lambda o: StepLR({"w": 1}, 2), "optimizer must be an lstmx.optim optimiser"),
])
def test_bad_schedule_arguments(make, match):
    with pytest.raises((TypeError, ValueError), match=match):
        make(SGD({"w": np.zeros(1)}, lr=0.1))
