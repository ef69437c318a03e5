"""The regularisation options where they meet the other features: saving and loading keep
them, and quantisation refuses what its kernels do not compute instead of dropping it."""
import io

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lstmx

MODELS = [
    lambda: lstmx.LSTMCell(3, 4, zoneout=(0.1, 0.2), layer_norm=True, cell_clip=3.0, seed=0),
    lambda: lstmx.LSTM(3, 4, num_layers=2, bidirectional=True, dropout=0.3,
                       recurrent_dropout=0.2, zoneout=0.1, layer_norm=True, cell_clip=2.0,
                       seed=0),
]


@pytest.mark.parametrize("make", MODELS, ids=["cell", "lstm"])
def test_save_load_keeps_the_options_and_the_layer_norm_parameters(make):
    model = make()
    for name, p in model.parameters().items():  # not the initial gamma = 1, beta = 0
        p += np.linspace(-0.1, 0.1, p.size, dtype=p.dtype).reshape(p.shape)
    buf = io.BytesIO()
    lstmx.save(model, buf)
    buf.seek(0)
    loaded = lstmx.load(buf)
    assert loaded.config == model.config
    for name, p in model.state_dict().items():
        assert_array_equal(loaded.state_dict()[name], p, err_msg=name)
    x = np.random.default_rng(0).standard_normal(
        (2, 3) if isinstance(model, lstmx.LSTMCell) else (5, 2, 3)).astype(np.float32)
    assert_array_equal(loaded(x)[0], model(x)[0])
    want = model.forward_train(x, rng=7)
    got = loaded.forward_train(x, rng=7)
    assert_array_equal(got[0][0] if isinstance(model, lstmx.LSTMCell) else got[0],
                       want[0][0] if isinstance(model, lstmx.LSTMCell) else want[0])


@pytest.mark.parametrize("option", [dict(layer_norm=True), dict(zoneout=0.1),
                                    dict(zoneout=(0.0, 0.2)), dict(cell_clip=1.0)])
@pytest.mark.parametrize("mode", ["int8", "bfloat16"])
@pytest.mark.parametrize("cls", [lstmx.LSTM, lstmx.LSTMCell])
def test_quantize_refuses_what_its_kernels_do_not_compute(cls, mode, option):
    model = cls(3, 4, seed=0, **option)
    name = next(iter(option))
    with pytest.raises(ValueError, match=f"{name}=.*cannot be quantised"):
        model.quantize(mode)


@pytest.mark.parametrize("mode", ["int8", "bfloat16"])
def test_dropouts_do_not_change_a_quantised_model(mode):
    plain = lstmx.LSTM(3, 5, num_layers=2, seed=1)
    dropped = lstmx.LSTM(3, 5, num_layers=2, dropout=0.5, recurrent_dropout=0.3, seed=1)
    x = np.random.default_rng(1).standard_normal((6, 2, 3)).astype(np.float32)
    q, q_dropped = plain.quantize(mode), dropped.quantize(mode)
    assert q_dropped.config.dropout == 0.5 and q_dropped.config.recurrent_dropout == 0.3
    assert_array_equal(q_dropped(x)[0], q(x)[0])
