"""The compiled kernels agree with the NumPy reference: every option, both dtypes."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from numpy.testing import assert_allclose

import lstmx
from _helpers import random_problem, reference_run, tolerances

DTYPES = [np.float32, np.float64]

# peephole x output activation x projection x (layers, bidirectional) x lengths
COMBINATIONS = list(itertools.product(
    [False, True], ["tanh", "identity"], [0, 3], [(1, False), (2, True), (3, False)],
    [False, True]))


def assert_matches_reference(lstm, T, B, rng, lengths, state=True):
    x, st_, lens, dy, dstate = random_problem(lstm, T, B, rng, lengths, state)
    y, (h, c), cache = lstm.forward_train(x, st_, lens)
    dx, (dh0, dc0), grads = lstm.backward(cache, dy, dstate)
    ref = reference_run(lstm, x, st_, lens, dy, dstate)
    tol = tolerances(lstm.dtype)
    for got, want in zip((y, h, c, dx, dh0, dc0), ref[:6]):
        assert got.dtype == lstm.dtype
        assert_allclose(got, want, **tol)
    assert list(grads) == list(lstm.state_dict())
    for name, g in grads.items():
        assert g.shape == lstm.parameters()[name].shape
        assert_allclose(g, ref[6][name], **tol, err_msg=name)
    # Inference gives what training gives.
    y2, (h2, c2) = lstm(x, st_, lens)
    assert_allclose(y2, y, **tol)
    assert_allclose(h2, h, **tol)
    assert_allclose(c2, c, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("peephole,act,proj,layers,lengths", COMBINATIONS)
def test_every_combination(dtype, peephole, act, proj, layers, lengths):
    num_layers, bidirectional = layers
    lstm = lstmx.LSTM(5, 6, num_layers=num_layers, bidirectional=bidirectional,
                      proj_size=proj, peephole=peephole, output_activation=act, dtype=dtype,
                      seed=1)
    assert_matches_reference(lstm, 7, 4, np.random.default_rng(2), lengths)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_first_no_bias_zero_state(dtype):
    lstm = lstmx.LSTM(3, 4, num_layers=2, bias=False, batch_first=True, bidirectional=True,
                      dtype=dtype, seed=0)
    assert_matches_reference(lstm, 5, 3, np.random.default_rng(0), lengths=True, state=False)


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 9), B=st.integers(1, 6), I=st.integers(1, 9), H=st.integers(1, 8),
       num_layers=st.integers(1, 2), bidirectional=st.booleans(), lengths=st.booleans(),
       peephole=st.booleans(), proj=st.booleans(), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**16))
def test_random_shapes(T, B, I, H, num_layers, bidirectional, lengths, peephole, proj, dtype,
                       seed):
    proj_size = H - 1 if proj and H > 1 else 0
    lstm = lstmx.LSTM(I, H, num_layers=num_layers, bidirectional=bidirectional,
                      peephole=peephole, proj_size=proj_size, dtype=dtype, seed=seed)
    assert_matches_reference(lstm, T, B, np.random.default_rng(seed), lengths)


@pytest.mark.parametrize("dtype", DTYPES)
def test_long_inference_chunks_match_training(dtype):
    # Inference projects the input in chunks of time steps; training in one GEMM. A batch
    # large enough for several chunks checks the chunk boundaries in both directions. B is
    # a multiple of every kernel variant's tile rows (6 and 8), so that the chunks' row
    # tiles line up with training's and the two can be compared bit for bit (in general
    # they agree to rounding: docs/guarantees.md, "Determinism").
    lstm = lstmx.LSTM(4, 64, bidirectional=True, dtype=dtype, seed=3)
    rng = np.random.default_rng(3)
    T, B = 300, 48  # 1 << 20 elements per chunk / (B * 4H) = 85 steps per chunk: 4 chunks
    x = rng.standard_normal((T, B, 4)).astype(dtype)
    lengths = rng.integers(1, T + 1, size=B)
    y, (h, c) = lstm(x, lengths=lengths)
    y_t, (h_t, c_t), _ = lstm.forward_train(x, lengths=lengths)
    assert_allclose(y, y_t, rtol=0, atol=0)
    assert_allclose(h, h_t, rtol=0, atol=0)
    assert_allclose(c, c_t, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("peephole", [False, True])
def test_cell_matches_reference(dtype, peephole):
    from lstmx import reference
    cell = lstmx.LSTMCell(4, 5, peephole=peephole, dtype=dtype, seed=0)
    rng = np.random.default_rng(0)
    x, h, c = (rng.standard_normal(s).astype(dtype) for s in [(3, 4), (3, 5), (3, 5)])
    dh, dc = (rng.standard_normal((3, 5)).astype(dtype) for _ in range(2))
    (h1, c1), cache = cell.forward_train(x, (h, c))
    dx, (dh0, dc0), grads = cell.backward(cache, (dh, dc))
    p = {k: v.astype(np.float64) for k, v in cell.parameters().items()}
    b = p["bias_ih"] + p["bias_hh"]
    peep = np.stack([p["weight_ci"], p["weight_cf"], p["weight_co"]]) if peephole else None
    h_r, c_r, saved = reference.cell_forward(x, h, c, p["weight_ih"], p["weight_hh"], b,
                                             peep=peep)
    dx_r, dh_r, dc_r, (dW, dU, db, _, dpeep) = reference.cell_backward(
        dh, dc, saved, p["weight_ih"], p["weight_hh"], peep=peep)
    tol = tolerances(dtype)
    for got, want in [(h1, h_r), (c1, c_r), (dx, dx_r), (dh0, dh_r), (dc0, dc_r),
                      (grads["weight_ih"], dW), (grads["weight_hh"], dU),
                      (grads["bias_ih"], db), (grads["bias_hh"], db)]:
        assert_allclose(got, want, **tol)
    if peephole:
        for k, gate in enumerate("ifo"):
            assert_allclose(grads[f"weight_c{gate}"], dpeep[k], **tol)
    assert_allclose(cell(x, (h, c))[0], h1, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_in_several_chunks_matches_reference(dtype):
    # Backward keeps dz for a chunk of at most 256 rows (steps x batch) at a time: with
    # B = 64 that is 4 steps, so T = 150 runs 38 chunks (the last one short) each direction.
    lstm = lstmx.LSTM(3, 64, bidirectional=True, proj_size=0, dtype=dtype, seed=4)
    assert_matches_reference(lstm, 150, 64, np.random.default_rng(4), lengths=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("peephole", [False, True])
def test_projection_on_packed_weights_matches_reference(dtype, peephole):
    # With a projection, recurrent products too big for gemm_small run on gemm_packed with
    # U.T and R.T packed once a call (AVX2 and AVX-512 builds): B * 4H * P is 10x
    # SMALL_PRODUCT here; H = 70 and P = 33 end in partial strips of 32 columns, B = 37 in
    # a partial tile of rows.
    lstm = lstmx.LSTM(20, 70, proj_size=33, num_layers=2, bidirectional=True,
                      peephole=peephole, dtype=dtype, seed=6)
    assert_matches_reference(lstm, 9, 37, np.random.default_rng(6), lengths=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("peephole,act", [(False, "tanh"), (True, "identity")])
@pytest.mark.parametrize("threads", [1, 2, 3, 4])
def test_parallel_kernels_match_reference(dtype, peephole, act, threads):
    # Big enough for the multi-threaded kernels (AVX2, AVX-512 builds split hidden units between
    # OpenMP threads); H = 200 is 6 strips of 32 units and a partial one, B = 37 is 4 row
    # tiles of 8 and 5 rows more, T = 20 runs 4 backward chunks (256 rows // B = 6 steps).
    # On 2 and 3 threads the two directions run side by side, one thread each; on 4, one
    # after the other on 4 threads each.
    from threadpoolctl import threadpool_limits
    lstm = lstmx.LSTM(50, 200, bidirectional=True, peephole=peephole, output_activation=act,
                      dtype=dtype, seed=5)
    with threadpool_limits(threads, user_api="openmp"):  # (the reference's BLAS as it is)
        assert_matches_reference(lstm, 20, 37, np.random.default_rng(5), lengths=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("peephole,act", [(False, "tanh"), (True, "tanh"), (False, "identity")])
@pytest.mark.parametrize("H", [52, 63])
def test_a_rows_last_units_run_as_a_vector_match_reference(dtype, peephole, act, H):
    # The cell runs a row's last units as the row's last whole vector (cell_forward_window)
    # where its loops would leave three or more to scalar code: H = 63 on AVX-512 (float32
    # and float64) and AVX2 (float32), H = 52 on AVX-512 (float32).
    lstm = lstmx.LSTM(4, H, peephole=peephole, output_activation=act, dtype=dtype, seed=3)
    assert_matches_reference(lstm, 6, 5, np.random.default_rng(3), lengths=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("I,H,T,B", [(3, 5, 6, 4), (50, 200, 20, 37)])
def test_zero_peepholes_give_the_plain_model_bit_for_bit(dtype, I, H, T, B):
    # Without peepholes the cell loops have lean versions (no peephole loads, no stores of
    # what backward does not need); written as the full loops statement for statement, they
    # give exactly what the full loops give with zero peepholes. The second size takes the
    # threaded kernels on AVX2 and AVX-512 builds.
    plain = lstmx.LSTM(I, H, bidirectional=True, dtype=dtype, seed=7)
    peep = lstmx.LSTM(I, H, bidirectional=True, peephole=True, dtype=dtype, seed=7)
    weights = plain.state_dict()
    peep.load_state_dict({name: weights.get(name, np.zeros_like(value))
                          for name, value in peep.state_dict().items()})
    rng = np.random.default_rng(7)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    lengths = rng.integers(1, T + 1, size=B)
    outputs = [model.forward_train(x, lengths=lengths) for model in (plain, peep)]
    for got, want in zip(outputs[1][:2], outputs[0][:2]):
        assert_allclose(got, want, rtol=0, atol=0)
    dy = rng.standard_normal(outputs[0][0].shape).astype(dtype)
    dx, (dh0, dc0), grads = plain.backward(outputs[0][2], dy)
    dx_p, (dh0_p, dc0_p), grads_p = peep.backward(outputs[1][2], dy)
    for got, want in ((dx_p, dx), (dh0_p, dh0), (dc0_p, dc0)):
        assert_allclose(got, want, rtol=0, atol=0)
    for name, g in grads.items():
        assert_allclose(grads_p[name], g, rtol=0, atol=0, err_msg=name)
