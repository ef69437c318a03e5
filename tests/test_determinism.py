"""Results do not depend on the number of threads: bit for bit, in every kernel variant.

The threaded kernels split hidden units (and, in backward, rows of dW and dU and columns of
dx; with layer norm or projection, the batch's rows, forward and backward) between OpenMP
threads, and the two directions of a layer may run side by side; none of that may change a
single bit of an output or a gradient.
"""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import lstmx
from _helpers import DEPTHS, depth_block
from lstmx import _dispatch, _engine


# The baseline variant does its products on BLAS, whose results may depend on its own
# thread count (docs/guarantees.md, "Determinism"): the promise is the tile kernels'.
@pytest.fixture(params=[v for v in _dispatch.available() if v != "baseline"])
def variant(request, monkeypatch):
    kernels = _dispatch.load(request.param)
    monkeypatch.setattr(_engine, "_kernels", kernels)
    # Costs under which every team pays, so that the threaded drivers run the thread counts
    # asked for (the measured plan may keep small shapes on one thread).
    kernels.set_plan_costs({n: {"barrier_s": 0.0, "fma_s": 1e-10} for n in range(1, 9)},
                           call_work=0)
    yield request.param
    kernels.forget_plan_costs()


@pytest.fixture(params=DEPTHS, ids=[f"depth{d}" for d in DEPTHS])
def depth(request, variant):
    with depth_block(variant, request.param):
        yield request.param


def train_step(m, x, lengths):
    # A seeded rng: the same masks (recurrent dropout, zoneout) on every number of threads.
    y, (h, c), cache = m.forward_train(x, lengths=lengths, rng=5)
    dy = np.cos(np.arange(y.size, dtype=m.dtype)).reshape(y.shape)
    dx, (dh, dc), grads = m.backward(cache, dy)
    inference = m(x, lengths=lengths)[0]
    return [np.array(y), h, c, inference, dx, dh, dc] + [grads[k] for k in sorted(grads)]


@pytest.mark.parametrize("T,B,I,H,options", [
    (6, 7, 3, 50, {}),                        # H not a multiple of 32 (partial strips)
    # A thread's last units run as a vector where the row's would not (cell_forward_window)
    (5, 9, 3, 63, {"peephole": True}),
    (5, 33, 31, 100, {"peephole": True}),     # rows past the last tile, I past a strip
    (4, 8, 1, 64, {"bidirectional": True}),  # directions side by side on 2-3 threads
    (3, 16, 40, 160, {"bidirectional": True, "num_layers": 2}),  # 4H past a k block
    # The regularised cell's unit-wise options, which run on the same threaded drivers.
    (6, 7, 3, 50, {"recurrent_dropout": 0.3, "zoneout": (0.2, 0.4), "cell_clip": 0.5}),
    (5, 33, 31, 100, {"zoneout": 0.3, "peephole": True, "cell_clip": 0.3}),
    (3, 16, 40, 160, {"bidirectional": True, "num_layers": 2, "recurrent_dropout": 0.4,
                      "dropout": 0.2, "zoneout": (0.0, 0.3)}),
    # Layer norm and projection, whose forward splits the batch's rows (13: a short tile).
    (6, 13, 5, 40, {"layer_norm": True, "zoneout": 0.2, "cell_clip": 0.7}),
    (5, 33, 31, 50, {"proj_size": 20, "recurrent_dropout": 0.3, "peephole": True}),
    (4, 8, 3, 64, {"layer_norm": True, "bidirectional": True, "proj_size": 30}),
    # Forward's team of rows over several chunks, which it projects split by their rows.
    (40, 12, 3, 64, {}),
    (40, 12, 3, 64, {"zoneout": 0.2}),
    # Backward's team of rows over several chunks (256 rows each) and a row past its tiles.
    (41, 13, 4, 40, {"layer_norm": True, "proj_size": 9, "peephole": True}),
    # Products that hold two blocks of 256 of k (I and H past 512), rows past the tiles.
    (3, 13, 530, 515, {}),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_bits_on_any_number_of_threads(variant, depth, T, B, I, H, options, dtype):
    m = lstmx.LSTM(I, H, dtype=dtype, seed=1, **options)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    lengths = rng.integers(1, T + 1, B)
    results = {}
    for threads in (1, 2, 3, 4):
        with threadpool_limits(threads):
            results[threads] = train_step(m, x, lengths)
    for threads in (2, 3, 4):
        for one, many in zip(results[1], results[threads]):
            np.testing.assert_array_equal(many, one, err_msg=f"{threads} threads")
