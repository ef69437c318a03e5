"""Recurrent dropout, zoneout and cell clip on the threaded drivers: which driver runs, and the
results against the reference (forward and backward, training and inference).

Without layer norm and projection these options act unit by unit, so where the plain layer
runs forward_parallel and backward_parallel (AVX2 and AVX-512 builds, products too big for
gemm_small) they run there too, on a team; with layer norm or projection the regularised
driver's forward splits the batch's rows between a team, its backward is serial. That the results do not depend on the team is in
tests/test_determinism.py.
"""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from lstmx import LSTM, _dispatch, _engine

from test_regularisation import _check_against_reference, _shift_layer_norms

THREADED = [v for v in _dispatch.available() if v != "baseline"]  # the variants with teams

# Big enough for the threaded drivers: B * 4H * H above gemm_small's 2**15 multiply-adds.
T, B, I, H = 5, 8, 6, 70

UNIT_WISE = [
    dict(recurrent_dropout=0.4),
    dict(zoneout=0.3),
    dict(zoneout=(0.4, 0.0)),
    dict(zoneout=(0.0, 0.5)),
    dict(cell_clip=0.3),
    dict(recurrent_dropout=0.3, zoneout=(0.2, 0.6), cell_clip=0.5, peephole=True),
    dict(recurrent_dropout=0.3, zoneout=0.3, output_activation="identity", bias=False),
    dict(recurrent_dropout=0.2, zoneout=(0.3, 0.4), cell_clip=0.8, bidirectional=True,
         num_layers=2, dropout=0.3),
    dict(reverse=True, zoneout=0.3, recurrent_dropout=0.2),
]


class _Recorder:
    """The kernel module, with the plans of its regularised calls recorded as they run."""

    def __init__(self, kernels):
        self._kernels = kernels
        self.forward_plans, self.backward_plans = [], []

    def __getattr__(self, name):
        return getattr(self._kernels, name)

    def forward_regularised(self, call):
        self.forward_plans.append(call.describe())
        return self._kernels.forward_regularised(call)

    def backward_regularised(self, call):
        self.backward_plans.append(call.describe())
        return self._kernels.backward_regularised(call)

    def forward_regularised_pair(self, fwd, rev):
        self.forward_plans += [fwd.describe(), rev.describe()]
        return self._kernels.forward_regularised_pair(fwd, rev)

    def backward_regularised_pair(self, fwd, rev):
        self.backward_plans += [fwd.describe(), rev.describe()]
        return self._kernels.backward_regularised_pair(fwd, rev)


@pytest.fixture(params=THREADED)
def recorder(request, monkeypatch):
    """A threaded variant, recorded, under costs where every team pays (so that a team of 2
    runs on 2 threads whatever the machine's load)."""
    kernels = _dispatch.load(request.param)
    kernels.set_plan_costs({n: {"barrier_s": 0.0, "fma_s": 1e-10} for n in range(1, 9)},
                           call_work=0)
    rec = _Recorder(kernels)
    monkeypatch.setattr(_engine, "_kernels", rec)
    yield rec
    kernels.forget_plan_costs()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("options", UNIT_WISE)
def test_unit_wise_options_run_threaded_and_match_reference(recorder, options, dtype):
    lstm = LSTM(I, H, dtype=dtype, seed=1, **options)
    with threadpool_limits(2):
        _check_against_reference(lstm, T, B, lengths=True, seed=3)
    # Inference runs the kernels only with zoneout or a clip (recurrent dropout does nothing).
    assert recorder.forward_plans and recorder.backward_plans
    for plan in recorder.forward_plans:
        assert plan["driver"] == "threaded" and plan["threads"] == 2
    for plan in recorder.backward_plans:
        assert plan == {"driver": "threaded", "threads": 2}


@pytest.mark.parametrize("B,split", [(13, "rows"), (3, "units")])
@pytest.mark.parametrize("options", [dict(recurrent_dropout=0.3, zoneout=(0.2, 0.4)),
                                     dict(zoneout=0.3, cell_clip=0.5, peephole=True)])
def test_unit_wise_options_on_either_split(recorder, options, B, split):
    # forward_parallel's team splits the batch's rows where the plain layer's would (13
    # rows: two tiles or more on AVX2 and AVX-512), hidden units where the batch is one tile.
    lstm = LSTM(I, H, dtype=np.float64, seed=4, **options)
    with threadpool_limits(2):
        _check_against_reference(lstm, T, B, lengths=True, seed=6)
    assert recorder.forward_plans
    for plan in recorder.forward_plans:
        assert plan == {"driver": "threaded", "threads": 2, "split": split}


@pytest.mark.parametrize("options", [dict(layer_norm=True, zoneout=0.3),
                                     dict(proj_size=20, recurrent_dropout=0.3)])
def test_layer_norm_and_projection_split_rows_forward(recorder, options):
    lstm = LSTM(I, H, dtype=np.float64, seed=2, **options)
    _shift_layer_norms(lstm, 4)
    with threadpool_limits(2):
        _check_against_reference(lstm, T, 13, lengths=True, seed=5)
    assert recorder.forward_plans and recorder.backward_plans
    # 13 rows: two tiles of 6 and a short one (AVX2), or a tile of 8 and a short one
    # (AVX-512); two threads, forward and backward.
    for plan in recorder.forward_plans + recorder.backward_plans:
        assert plan == {"driver": "rows", "threads": 2}


@pytest.mark.parametrize("threads", [1, 2])
def test_layer_norm_over_several_forward_chunks(recorder, threads):
    # The input projection runs in chunks that fill half of L2 (chunk_steps): 13 rows of
    # 4 * 70 doubles are 29 KB a step, so 80 steps are three chunks or more with up to 2 MiB
    # of L2 a core; training keeps every chunk's rows, both directions (the reverse one
    # starts from the last chunk).
    lstm = LSTM(I, H, dtype=np.float64, seed=12, layer_norm=True, zoneout=0.2,
                bidirectional=True)
    _shift_layer_norms(lstm, 3)
    with threadpool_limits(threads):
        _check_against_reference(lstm, T=80, B=13, lengths=True, seed=13)
    assert recorder.forward_plans
    for plan in recorder.forward_plans:
        assert plan == {"driver": "rows", "threads": threads}


def test_one_thread_is_a_team_of_one(recorder):
    lstm = LSTM(I, H, dtype=np.float32, seed=6, recurrent_dropout=0.3, zoneout=0.2,
                cell_clip=0.4)
    with threadpool_limits(1):
        _check_against_reference(lstm, T, B, lengths=False, seed=7)
    assert recorder.forward_plans and recorder.backward_plans
    for plan in recorder.forward_plans:
        assert plan == {"driver": "threaded", "threads": 1, "split": "rows"}
    for plan in recorder.backward_plans:
        assert plan == {"driver": "threaded", "threads": 1}


def test_several_backward_chunks(recorder):
    # B * T rows past backward's chunk of 256 rows: dz, dW and dU over several chunks.
    lstm = LSTM(I, H, dtype=np.float64, seed=8, recurrent_dropout=0.3, zoneout=(0.2, 0.4),
                cell_clip=0.6)
    with threadpool_limits(2):
        _check_against_reference(lstm, T=40, B=B, lengths=True, seed=9)
    plans = recorder.forward_plans + recorder.backward_plans
    assert plans and {p["driver"] for p in plans} == {"threaded"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturating_inputs_give_finite_results(recorder, dtype):
    # Gates at exactly 0 or 1 everywhere: the unit-wise options keep outputs and gradients
    # finite, as the plain threaded drivers do.
    lstm = LSTM(I, H, dtype=dtype, seed=10, recurrent_dropout=0.3, zoneout=(0.2, 0.4),
                cell_clip=0.5)
    x = np.full((T, B, I), 1e30, dtype)
    x[:, ::2] *= -1
    with threadpool_limits(2):
        y, (h, c), cache = lstm.forward_train(x, rng=11)
        dx, (dh0, dc0), grads = lstm.backward(cache, np.ones_like(np.asarray(y)))
        inference = lstm(x)[0]
    # (Not weight_ih_l0's gradient, dz^T x, whose x is 1e30.)
    finite = [g for name, g in grads.items() if name != "weight_ih_l0"]
    for a in [y, h, c, inference, dx, dh0, dc0] + finite:
        assert np.isfinite(a).all()
    assert np.abs(c).max() <= 0.5  # every c_t within the clip, zoneout of clipped values
    assert {p["driver"] for p in recorder.forward_plans + recorder.backward_plans} == {
        "threaded"}
