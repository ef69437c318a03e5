"""Every validation path of the public API, one row each.

The error policy (docs/guarantees.md): bad input raises ``TypeError`` (wrong kind of thing) or
``ValueError`` (right kind, wrong value or shape) before any kernel runs, and the message names
the argument, says what was expected and what was got. Each row below gives the call, the
exception type and three fragments the message must contain: the argument, the expectation and
what was received. A spy on the compiled kernels checks that none of them ran.
"""
import numpy as np
import pytest

import lstmx

F32 = np.float32


def lstm(**kw):
    kw.setdefault("seed", 0)
    return lstmx.LSTM(3, 4, **kw)


def cell(**kw):
    kw.setdefault("seed", 0)
    return lstmx.LSTMCell(3, 4, **kw)


def x(T=5, B=2, I=3, dtype=F32):
    return np.zeros((T, B, I), dtype)


def state(LD=1, B=2, Hout=4, H=4, dtype=F32):
    return np.zeros((LD, B, Hout), dtype), np.zeros((LD, B, H), dtype)


def trained(layer, *args):
    """A cache and a matching dy from ``layer.forward_train``."""
    y, _, cache = layer.forward_train(*args)
    return cache, np.zeros_like(y)


def cell_cache(c, B=2):
    return c.forward_train(np.zeros((B, 3), F32))[1]


def backward_call(layer_kw, dy_fn=None, dstate=None, cache_fn=None):
    """A zero-argument call of ``LSTM.backward``; its forward runs before the spy starts."""
    def make():
        layer = lstm(**layer_kw)
        cache, dy = trained(layer, x())
        if cache_fn is not None:
            cache = cache_fn()
        if dy_fn is not None:
            dy = dy_fn(dy)
        return lambda: layer.backward(cache, dy, dstate)
    return make


def cell_backward_call(dstate, cache_fn=None):
    def make():
        c = cell()
        cache = cell_cache(c) if cache_fn is None else cache_fn()
        return lambda: c.backward(cache, dstate)
    return make


def now(fn):
    """A row whose call needs no setup."""
    return lambda: fn


NOT_FLOAT = "must be a float32 or float64 array"
BIG = np.broadcast_to(F32(0), (2 ** 16, 2 ** 15 + 1, 3))  # 2**31 + 2**16 rows, no memory

# (id, make, exception, argument, expected, got)
CASES = [
    # --- constructor options (LSTMConfig, shared by LSTM and LSTMCell)
    ("input_size_float", now(lambda: lstmx.LSTM(2.5, 4)), TypeError,
     "input_size", "must be an integer", "float 2.5"),
    ("input_size_bool", now(lambda: lstmx.LSTM(True, 4)), TypeError,
     "input_size", "must be an integer", "True"),
    ("input_size_zero", now(lambda: lstmx.LSTM(0, 4)), ValueError,
     "input_size", ">= 1", "got 0"),
    ("hidden_size_str", now(lambda: lstmx.LSTM(3, "4")), TypeError,
     "hidden_size", "must be an integer", "str '4'"),
    ("hidden_size_negative", now(lambda: lstmx.LSTM(3, -1)), ValueError,
     "hidden_size", ">= 1", "got -1"),
    ("num_layers_zero", now(lambda: lstm(num_layers=0)), ValueError,
     "num_layers", ">= 1", "got 0"),
    ("num_layers_float", now(lambda: lstm(num_layers=2.0)), TypeError,
     "num_layers", "must be an integer", "float 2.0"),
    ("proj_size_negative", now(lambda: lstm(proj_size=-1)), ValueError,
     "proj_size", ">= 0", "got -1"),
    ("proj_size_not_below_hidden", now(lambda: lstm(proj_size=4)), ValueError,
     "proj_size", "smaller than hidden_size (4)", "got 4"),
    ("bias_int", now(lambda: lstm(bias=1)), TypeError,
     "bias", "must be a bool", "int 1"),
    ("batch_first_str", now(lambda: lstm(batch_first="yes")), TypeError,
     "batch_first", "must be a bool", "str 'yes'"),
    ("bidirectional_none", now(lambda: lstm(bidirectional=None)), TypeError,
     "bidirectional", "must be a bool", "NoneType None"),
    ("reverse_str", now(lambda: lstm(reverse="yes")), TypeError,
     "reverse", "must be a bool", "str 'yes'"),
    ("reverse_bidirectional", now(lambda: lstm(reverse=True, bidirectional=True)), ValueError,
     "reverse", "bidirectional", "True"),
    ("peephole_int", now(lambda: lstm(peephole=0)), TypeError,
     "peephole", "must be a bool", "int 0"),
    ("output_activation_unknown", now(lambda: lstm(output_activation="relu")), ValueError,
     "output_activation", "one of ('tanh', 'identity')", "'relu'"),
    ("dtype_int", now(lambda: lstm(dtype=np.int32)), TypeError,
     "dtype", "float32 or float64", "int32"),
    ("dtype_float16", now(lambda: lstm(dtype=np.float16)), TypeError,
     "dtype", "float32 or float64", "float16"),
    ("dtype_not_a_dtype", now(lambda: lstm(dtype="single precision")), TypeError,
     "dtype", "float32 or float64", "'single precision'"),
    ("init_unknown", now(lambda: lstm(init="xavier")), ValueError,
     "init", "one of ('pytorch', 'keras')", "'xavier'"),
    ("cell_hidden_size_zero", now(lambda: lstmx.LSTMCell(3, 0)), ValueError,
     "hidden_size", ">= 1", "got 0"),
    ("cell_peephole_str", now(lambda: cell(peephole="no")), TypeError,
     "peephole", "must be a bool", "str 'no'"),
    ("cell_output_activation", now(lambda: cell(output_activation=None)), ValueError,
     "output_activation", "one of", "None"),
    ("cell_dtype", now(lambda: cell(dtype=complex)), TypeError,
     "dtype", "float32 or float64", "complex128"),
    ("cell_init", now(lambda: cell(init="glorot")), ValueError,
     "init", "one of", "'glorot'"),

    # --- LSTM input x
    ("x_int_dtype", now(lambda: lstm()(x().astype(int))), TypeError,
     "x", NOT_FLOAT, "got dtype int64"),
    ("x_complex_dtype", now(lambda: lstm()(x().astype(complex))), TypeError,
     "x", NOT_FLOAT, "got dtype complex128"),
    ("x_object", now(lambda: lstm()(np.array([[[None]]]))), TypeError,
     "x", NOT_FLOAT, "got dtype object"),
    ("x_str", now(lambda: lstm()("abc")), TypeError,
     "x", NOT_FLOAT, "got dtype <U3"),
    ("x_ragged", now(lambda: lstm()([[[0.0, 0.0, 0.0]], [[0.0]]])), ValueError,
     "x", "must be an array of floats", "list that does not convert"),
    ("x_1d", now(lambda: lstm()(np.zeros(3, F32))), ValueError,
     "x", "3-D with shape (T, B, 3) (seq_len, batch, input_size)", "got 1-D with shape (3,)"),
    ("x_scalar", now(lambda: lstm()(1.0)), ValueError,
     "x", "3-D", "got 0-D"),
    ("x_wrong_input_size", now(lambda: lstm()(x(I=5))), ValueError,
     "x", "shape (T, B, 3)", "got (5, 2, 5)"),
    ("x_empty_sequence", now(lambda: lstm()(x(T=0))), ValueError,
     "x", "T >= 1", "got shape (0, 2, 3)"),
    ("x_empty_batch", now(lambda: lstm()(x(B=0))), ValueError,
     "x", "B >= 1", "got shape (5, 0, 3)"),
    ("x_batch_first_wrong", now(lambda: lstm(batch_first=True)(x(I=2))), ValueError,
     "x", "(B, T, 3) (batch, seq_len, input_size)", "got (5, 2, 2)"),
    ("x_too_many_rows", now(lambda: lstm()(BIG)), ValueError,
     "x", "at most 2147483647 rows", "got 2147549184"),
    ("x_forward_train_int", now(lambda: lstm().forward_train(x().astype(np.int8))), TypeError,
     "x", NOT_FLOAT, "got dtype int8"),
    ("x_forward_train_shape", now(lambda: lstm().forward_train(x(I=1))), ValueError,
     "x", "shape (T, B, 3)", "got (5, 2, 1)"),

    # --- lengths
    ("lengths_float", now(lambda: lstm()(x(), lengths=[2.0, 3.0])), TypeError,
     "lengths", "must be integers", "got dtype float64"),
    ("lengths_bool", now(lambda: lstm()(x(), lengths=[True, True])), TypeError,
     "lengths", "must be integers", "got dtype bool"),
    ("lengths_wrong_count", now(lambda: lstm()(x(), lengths=[5, 5, 5])), ValueError,
     "lengths", "shape (2,), one per batch item", "got (3,)"),
    ("lengths_scalar", now(lambda: lstm()(x(), lengths=5)), ValueError,
     "lengths", "shape (2,)", "got ()"),
    ("lengths_zero", now(lambda: lstm()(x(), lengths=[0, 5])), ValueError,
     "lengths", "in [1, 5] (seq_len)", "from 0 to 5"),
    ("lengths_too_long", now(lambda: lstm()(x(), lengths=[6, 1])), ValueError,
     "lengths", "in [1, 5] (seq_len)", "from 1 to 6"),
    ("lengths_huge_unsigned", now(lambda: lstm()(x(), lengths=np.array([2**63, 1],
                                                                            np.uint64))),
     ValueError, "lengths", "in [1, 5]", "to 9223372036854775808"),
    ("lengths_ragged", now(lambda: lstm()(x(), lengths=[[1], [1, 2]])), ValueError,
     "lengths", "must be an array", "list that does not convert"),
    ("lengths_forward_train", now(lambda: lstm().forward_train(x(), lengths=[1, 9])),
     ValueError, "lengths", "in [1, 5]", "from 1 to 9"),

    # --- state
    ("state_array_not_pair", now(lambda: lstm()(x(), np.zeros((2, 1, 2, 4), F32))), TypeError,
     "state", "a pair (h0, c0)", "got ndarray"),
    ("state_triple", now(lambda: lstm()(x(), (*state(), state()[0]))), TypeError,
     "state", "a pair (h0, c0)", "a sequence of length 3"),
    ("state_h0_shape", now(lambda: lstm()(x(), state(Hout=5))), ValueError,
     "state[0] (h0)", "shape (1, 2, 4)", "got (1, 2, 5)"),
    ("state_c0_shape", now(lambda: lstm()(x(), state(B=3)[:1] + state()[1:])), ValueError,
     "state[0] (h0)", "shape (1, 2, 4)", "got (1, 3, 4)"),
    ("state_c0_batch", now(lambda: lstm()(x(), (state()[0], state(B=3)[1]))), ValueError,
     "state[1] (c0)", "shape (1, 2, 4)", "got (1, 3, 4)"),
    ("state_layers", now(lambda: lstm(num_layers=2)(x(), state())), ValueError,
     "state[0] (h0)", "shape (2, 2, 4)", "got (1, 2, 4)"),
    ("state_bidirectional", now(lambda: lstm(bidirectional=True)(x(), state())), ValueError,
     "state[0] (h0)", "shape (2, 2, 4)", "got (1, 2, 4)"),
    ("state_projection_h0", now(lambda: lstm(proj_size=2)(x(), state())), ValueError,
     "state[0] (h0)", "shape (1, 2, 2)", "got (1, 2, 4)"),
    ("state_c0_dtype", now(lambda: lstm()(x(), (state()[0], state()[1].astype(int)))),
     TypeError, "state[1] (c0)", NOT_FLOAT, "got dtype int64"),
    ("state_h0_none", now(lambda: lstm()(x(), (None, state()[1]))), TypeError,
     "state[0] (h0)", NOT_FLOAT, "got dtype object"),
    ("state_forward_train", now(lambda: lstm().forward_train(x(), state(H=3))), ValueError,
     "state[1] (c0)", "shape (1, 2, 4)", "got (1, 2, 3)"),

    # --- LSTM.backward
    ("cache_wrong_type", backward_call({}, cache_fn=lambda: {"y": 1}), TypeError,
     "cache", "the LSTMCache returned by forward_train", "got dict"),
    ("cache_other_config", backward_call({}, cache_fn=lambda: trained(lstm(bias=False),
                                                                      x())[0]),
     ValueError, "cache", "bias=True", "bias=False"),
    ("cache_other_dtype", backward_call({}, cache_fn=lambda: trained(
        lstm(dtype=np.float64), x(dtype=np.float64))[0]), ValueError,
     "cache", "dtype=dtype('float32')", "dtype=dtype('float64')"),
    ("dy_shape", backward_call({}, dy_fn=lambda dy: dy[:, :, :3]), ValueError,
     "dy", "shape (5, 2, 4) (the shape of y)", "got (5, 2, 3)"),
    ("dy_batch_first", backward_call({"batch_first": True}, dy_fn=lambda dy: dy[:1]),
     ValueError, "dy", "shape (5, 2, 4)", "got (1, 2, 4)"),
    ("dy_dtype", backward_call({}, dy_fn=lambda dy: dy.astype(np.int32)), TypeError,
     "dy", NOT_FLOAT, "got dtype int32"),
    ("dy_ndim", backward_call({}, dy_fn=lambda dy: dy[0]), ValueError,
     "dy", "3-D", "got 2-D"),
    ("dstate_not_pair", backward_call({}, dstate=3), TypeError,
     "dstate", "a pair (dh_n, dc_n)", "got int"),
    ("dstate_dh_shape", backward_call({}, dstate=(np.zeros((1, 2, 3), F32), None)),
     ValueError, "dstate[0] (dh_n)", "shape (1, 2, 4)", "got (1, 2, 3)"),
    ("dstate_dc_dtype", backward_call({}, dstate=(None, np.zeros((1, 2, 4), bool))),
     TypeError, "dstate[1] (dc_n)", NOT_FLOAT, "got dtype bool"),

    # --- LSTMCell
    ("cell_x_3d", now(lambda: cell()(x())), ValueError,
     "x", "2-D with shape (B, 3) (batch, input_size)", "got 3-D with shape (5, 2, 3)"),
    ("cell_x_width", now(lambda: cell()(np.zeros((2, 4), F32))), ValueError,
     "x", "shape (B, 3)", "got (2, 4)"),
    ("cell_x_empty_batch", now(lambda: cell()(np.zeros((0, 3), F32))), ValueError,
     "x", "B >= 1", "got shape (0, 3)"),
    ("cell_x_int", now(lambda: cell()(np.zeros((2, 3), np.int16))), TypeError,
     "x", NOT_FLOAT, "got dtype int16"),
    ("cell_state_not_pair", now(lambda: cell()(np.zeros((2, 3)), np.zeros((2, 4)))),
     TypeError, "state", "a pair (h, c)", "got ndarray"),
    ("cell_state_h_shape", now(lambda: cell()(np.zeros((2, 3)),
                                              (np.zeros((1, 2, 4)), np.zeros((2, 4))))),
     ValueError, "state[0] (h)", "2-D with shape (2, 4)", "got 3-D"),
    ("cell_state_c_batch", now(lambda: cell()(np.zeros((2, 3)),
                                              (np.zeros((2, 4)), np.zeros((3, 4))))),
     ValueError, "state[1] (c)", "shape (2, 4)", "got (3, 4)"),
    ("cell_forward_train_x", now(lambda: cell().forward_train(np.zeros((2, 2)))), ValueError,
     "x", "shape (B, 3)", "got (2, 2)"),
    ("cell_cache_wrong_type", cell_backward_call((None, None), cache_fn=lambda: 1), TypeError,
     "cache", "the LSTMCache returned by forward_train", "got int"),
    ("cell_cache_other_config", cell_backward_call(
        (None, None), cache_fn=lambda: cell_cache(cell(peephole=True))), ValueError,
     "cache", "peephole=False", "peephole=True"),
    ("cell_dstate_none", cell_backward_call(None), TypeError,
     "dstate", "a pair (dh, dc)", "got None"),
    ("cell_dstate_dh_shape", cell_backward_call((np.zeros((2, 5)), None)), ValueError,
     "dstate[0] (dh)", "shape (2, 4)", "got (2, 5)"),
    ("cell_dstate_dc_dtype", cell_backward_call((None, np.zeros((2, 4), "U1"))), TypeError,
     "dstate[1] (dc)", NOT_FLOAT, "got dtype <U1"),

    # --- load_state_dict
    ("state_dict_not_mapping", now(lambda: lstm().load_state_dict([1, 2])), TypeError,
     "state_dict", "must be a mapping", "got list"),
    ("state_dict_shape", now(lambda: lstm().load_state_dict(
        {**lstm().state_dict(), "weight_ih_l0": np.zeros((16, 4))})), ValueError,
     "state_dict['weight_ih_l0']", "shape (16, 3)", "got (16, 4)"),
    ("state_dict_dtype", now(lambda: lstm().load_state_dict(
        {**lstm().state_dict(), "bias_hh_l0": np.zeros(16, int)})), TypeError,
     "state_dict['bias_hh_l0']", NOT_FLOAT, "got dtype int64"),
    ("state_dict_ndim", now(lambda: lstm().load_state_dict(
        {**lstm().state_dict(), "bias_ih_l0": np.zeros((16, 1))})), ValueError,
     "state_dict['bias_ih_l0']", "1-D with shape (16,)", "got 2-D"),
    ("cell_state_dict_shape", now(lambda: cell().load_state_dict(
        {**cell().state_dict(), "weight_hh": np.zeros((16, 5))})), ValueError,
     "state_dict['weight_hh']", "shape (16, 4)", "got (16, 5)"),
]


@pytest.mark.parametrize("make, exc, argument, expected, got",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validation_error(make, exc, argument, expected, got, kernel_calls):
    call = make()
    kernel_calls.clear()
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    assert type(info.value) is exc
    assert argument in message, f"the message does not name {argument!r}: {message}"
    assert expected in message, f"the message does not say {expected!r}: {message}"
    assert got in message, f"the message does not say what was got, {got!r}: {message}"
    assert kernel_calls == [], f"a kernel ran before the error: {kernel_calls}"


def test_message_names_argument_first():
    # The argument leads the message, so a user scanning a traceback sees it at once.
    for _, make, exc, argument, _, _ in CASES:
        call = make()
        with pytest.raises(exc) as info:
            call()
        assert str(info.value).startswith(argument), str(info.value)


def test_cases_cover_every_argument_of_the_public_api():
    named = {c[3].split("[")[0] for c in CASES}
    assert {"input_size", "hidden_size", "num_layers", "proj_size", "bias", "batch_first",
            "bidirectional", "reverse", "peephole", "output_activation", "dtype", "init", "x",
            "lengths",
            "state", "cache", "dy", "dstate", "state_dict"} <= named


@pytest.mark.parametrize("mutate", ["missing", "unexpected"])
def test_load_state_dict_key_mismatch_is_a_key_error_naming_the_keys(mutate, kernel_calls):
    # KeyError, as torch.nn.Module.load_state_dict(strict=True) raises for a key mismatch.
    layer = lstm()
    sd = layer.state_dict()
    if mutate == "missing":
        del sd["bias_hh_l0"]
        fragment = "missing ['bias_hh_l0']"
    else:
        sd["weight_hr_l0"] = np.zeros((2, 4), F32)
        fragment = "unexpected ['weight_hr_l0']"
    with pytest.raises(KeyError) as info:
        layer.load_state_dict(sd)
    assert "state_dict keys do not match" in str(info.value)
    assert fragment in str(info.value)
    assert kernel_calls == []


def test_the_kernel_spy_sees_valid_calls(kernel_calls):
    # Guards the "no kernel ran" assertions above against a spy gone blind (a kernel module
    # renamed or a new dispatch path): a valid call must be seen, down to a compiled function.
    layer = lstm(bidirectional=True)
    y, _, cache = layer.forward_train(x())
    layer.backward(cache, np.ones_like(y))
    cell()(np.zeros((2, 3), F32))
    assert not any(c.endswith(".cell_step") for c in kernel_calls)
    cell()(np.zeros((2, 3), F32), (np.zeros((2, 4), F32), np.zeros((2, 4), F32)))
    assert any(c.endswith(".cell_step") for c in kernel_calls)
    assert any(c.startswith("lstmx._engine.forward") for c in kernel_calls)
    assert any(c.startswith("lstmx._engine.backward") for c in kernel_calls)
    assert any(c.startswith("lstmx._kernels") for c in kernel_calls), kernel_calls
