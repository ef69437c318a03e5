"""Truncated BPTT helpers: layout of batchify, chunking, and state carried across chunks."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import lstmx
from _helpers import tolerances
from lstmx.bptt import batchify, bptt_chunks


def test_batchify_columns_are_consecutive_pieces():
    data = batchify(np.arange(23), 4)
    assert data.shape == (5, 4) and data.flags.c_contiguous
    for b in range(4):
        assert_array_equal(data[:, b], np.arange(b * 5, (b + 1) * 5))


def test_batchify_keeps_feature_axes():
    stream = np.arange(30.0).reshape(10, 3)
    data = batchify(stream, 2)
    assert data.shape == (5, 2, 3)
    assert_array_equal(data[:, 1], stream[5:])


def test_bptt_chunks_cover_every_step_once():
    data = np.arange(11)
    xs, ys = zip(*bptt_chunks(data[:-1], data[1:], seq_len=4))
    assert [len(x) for x in xs] == [4, 4, 2]
    assert_array_equal(np.concatenate(xs), data[:-1])
    assert_array_equal(np.concatenate(ys), data[1:])
    assert_array_equal(np.concatenate(bptt_chunks(data, seq_len=3)), data)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_carried_across_chunks_equals_one_pass(dtype):
    rng = np.random.default_rng(0)
    lstm = lstmx.LSTM(3, 4, num_layers=2, peephole=True, dtype=dtype, seed=0)
    x = batchify(rng.standard_normal((60, 3)).astype(dtype), 3)  # (20, 3, 3)
    y_full, (h_full, c_full) = lstm(x)
    state, ys = None, []
    for chunk in bptt_chunks(x, seq_len=7):
        y, state, _ = lstm.forward_train(chunk, state)
        ys.append(y)
    assert_allclose(np.concatenate(ys), y_full, **tolerances(dtype))
    assert_allclose(state[0], h_full, **tolerances(dtype))
    assert_allclose(state[1], c_full, **tolerances(dtype))


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"stream must have at least batch_size \(4\) steps"):
        batchify(np.arange(3), 4)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        batchify(np.arange(3), 0)
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        batchify(np.arange(3), 1.5)
    with pytest.raises(ValueError, match=r"arrays\[1\] must have 5 steps"):
        bptt_chunks(np.arange(5), np.arange(4), seq_len=2)
    with pytest.raises(ValueError, match="seq_len must be >= 1"):
        bptt_chunks(np.arange(5), seq_len=0)
    with pytest.raises(TypeError, match="needs at least one array"):
        bptt_chunks(seq_len=2)
