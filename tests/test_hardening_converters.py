"""The PyTorch, TF1 and Keras converters against malformed input: a ValueError or TypeError
that says what was expected, never an IndexError, and work bounded by what was passed."""
import time

import numpy as np
import pytest

import lstmx
from lstmx.interop import from_keras_weights, from_tf1, from_torch, to_keras_weights, to_tf1

SHAPES = [(), (0,), (3,), (16,), (16, 3), (16, 2), (3, 16), (2, 16, 3), (0, 4), (16, 0)]


def refused_cleanly(call):
    """Run ``call``; it may succeed, or raise ValueError/TypeError with a message."""
    try:
        call()
    except (ValueError, TypeError) as err:
        assert str(err) and "kernel argument" not in str(err)


@pytest.mark.parametrize("cell", [False, True])
def test_torch_state_dicts_of_any_rank(cell):
    model = (lstmx.LSTMCell(3, 4, peephole=True, seed=0) if cell else
             lstmx.LSTM(3, 4, num_layers=2, proj_size=2, peephole=True, seed=0))
    sd = model.state_dict()
    for key in sd:
        for shape in SHAPES:
            for dtype in (np.float32, np.int64):
                refused_cleanly(lambda: from_torch({**sd, key: np.zeros(shape, dtype)}))


def test_tf1_cells_of_any_rank():
    cells = to_tf1(lstmx.LSTM(3, 4, num_layers=2, proj_size=2, peephole=True, seed=0),
                   forget_bias=0.0)
    for i, c in enumerate(cells):
        for key in c:
            for shape in SHAPES:
                changed = [dict(x) for x in cells]
                changed[i][key] = np.zeros(shape, np.float32)
                refused_cleanly(lambda: from_tf1(changed, forget_bias=1.0))
    with pytest.raises(ValueError, match=r"'projection/kernel'\] must be a \(H, P\)"):
        from_tf1([{**cells[0], "projection/kernel": np.float32(1)}], forget_bias=0.0)
    with pytest.raises(ValueError, match="with I >= 1 and H >= 1"):
        from_tf1({"kernel": np.zeros((4, 16), np.float32)}, forget_bias=0.0)


def test_keras_weights_of_any_rank():
    weights = to_keras_weights(lstmx.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0))
    for i, group in enumerate(weights):
        for j in range(len(group)):
            for shape in SHAPES:
                changed = [list(g) for g in weights]
                changed[i][j] = np.zeros(shape, np.float32)
                refused_cleanly(lambda: from_keras_weights(changed))
                refused_cleanly(lambda: from_keras_weights(changed[0], cell=True))


def test_torch_layer_numbers_bound_the_work():
    sd = lstmx.LSTM(3, 4, seed=0).state_dict()
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"numbered 0 to 1; it has keys for layers "
                                         r"\[0, 999999\] but none for \[1, 2, 3, 4, 5\]"):
        from_torch({**sd, "weight_ih_l999999": np.zeros((16, 4), np.float32)})
    assert time.perf_counter() - t0 < 0.5
    # A layer with some of its keys: a ValueError naming them, not load_state_dict's KeyError
    with pytest.raises(ValueError, match=r"missing \['weight_hh_l1', 'bias_ih_l1', "
                                         r"'bias_hh_l1'\]"):
        from_torch({**sd, "weight_ih_l1": np.zeros((16, 4), np.float32)})


@pytest.mark.parametrize("call", [
    lambda: from_torch(lstmx.LSTM(3, 4).state_dict(), batch_first="no"),
    lambda: from_tf1(to_tf1(lstmx.LSTM(3, 4), forget_bias=0.0), forget_bias=0.0,
                     bidirectional="no"),
    lambda: from_tf1(to_tf1(lstmx.LSTMCell(3, 4), forget_bias=0.0), forget_bias=0.0,
                     cell="yes"),
    lambda: from_keras_weights(to_keras_weights(lstmx.LSTMCell(3, 4)), cell="no"),
    lambda: from_keras_weights(to_keras_weights(lstmx.LSTM(3, 4)), batch_first="no"),
])
def test_flags_must_be_bools(call):
    with pytest.raises(TypeError, match="must be a bool; got str"):
        call()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_tf1_forget_bias_must_be_finite(bad):
    cells = to_tf1(lstmx.LSTM(3, 4, seed=0), forget_bias=0.0)
    with pytest.raises(ValueError, match="forget_bias must be finite"):
        from_tf1(cells, forget_bias=bad)
    with pytest.raises(ValueError, match="forget_bias must be finite"):
        to_tf1(lstmx.LSTM(3, 4, seed=0), forget_bias=bad)
