"""Interop of the regularised and layer-normalised LSTMs: what each format keeps or refuses.

PyTorch's ``dropout`` is lstmx's; a Keras ``Dropout`` layer between LSTM layers is lstmx's
dropout and Keras' ``recurrent_dropout`` its recurrent dropout (docs/interop.md says how
Keras' masks differ); ONNX exports a model's inference and records its dropouts; TF1's
``cell_clip`` is lstmx's. Zoneout, layer norm and clipping are refused where a format cannot
compute them.
"""
import os

# Keras 3 picks its backend when first imported; torch is the one in the test extras.
os.environ.setdefault("KERAS_BACKEND", "torch")

import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from numpy.testing import assert_allclose, assert_array_equal  # noqa: E402

import lstmx  # noqa: E402
from _helpers import assert_same_model, require  # noqa: E402
from lstmx.interop import (from_keras_weights, from_onnx, from_tf1, from_torch,  # noqa: E402
                           to_keras, to_keras_weights, to_onnx, to_tf1, to_torch)

T, B, I, H = 5, 3, 4, 6
F32 = dict(rtol=1e-5, atol=1e-6)
# Options no format but lstmx's own has (with ONNX and Keras; TF1 has the clip).
NOT_ELSEWHERE = [dict(zoneout=0.1), dict(zoneout=(0.2, 0.0)), dict(layer_norm=True),
                 dict(cell_clip=3.0)]


def x_of(model, seed=0):
    return np.random.default_rng(seed).standard_normal((T, B, model.config.input_size)) \
        .astype(model.config.dtype)


# ---------------------------------------------------------------------------------------
# PyTorch


def test_from_torch_keeps_the_modules_dropout(torch):
    module = torch.nn.LSTM(I, H, num_layers=2, dropout=0.3, bidirectional=True)
    model = from_torch(module)
    assert model.config.dropout == pytest.approx(0.3)
    module.eval()
    with torch.no_grad():
        want = module(torch.from_numpy(x_of(model)))[0].numpy()
    assert_allclose(model(x_of(model))[0], want, **F32)  # inference: no dropout either way
    # A state dict does not record it: 0 unless given.
    assert from_torch(module.state_dict()).config.dropout == 0.0
    assert from_torch(module.state_dict(), dropout=0.5).config.dropout == 0.5
    assert from_torch(module, dropout=0.0).config.dropout == 0.0  # given: it wins


def test_to_torch_keeps_dropout_and_round_trips(torch):
    model = lstmx.LSTM(I, H, num_layers=3, dropout=0.25, seed=1)
    module = to_torch(model)
    assert module.dropout == 0.25 and module.num_layers == 3
    assert_same_model(from_torch(module), model)


@pytest.mark.parametrize("options", [dict(recurrent_dropout=0.2), *NOT_ELSEWHERE])
def test_to_torch_refuses_what_torch_lacks(torch, options):
    name = next(iter(options))
    with pytest.raises(ValueError, match=f"PyTorch's LSTM has no .*{name}="):
        to_torch(lstmx.LSTM(I, H, seed=0, **options))


@pytest.mark.parametrize("options", [dict(zoneout=0.1), dict(layer_norm=True),
                                     dict(cell_clip=1.0)])
def test_to_torch_refuses_such_cells(torch, options):
    with pytest.raises(ValueError, match="PyTorch's LSTM has no"):
        to_torch(lstmx.LSTMCell(I, H, seed=0, **options))


def test_from_torch_reads_lstmx_layer_norm_state_dicts():
    """As for peepholes: lstmx's own state dicts, layer-norm parameters included, rebuild
    the model (the options that are not parameters are given)."""
    model = lstmx.LSTM(I, H, num_layers=2, bidirectional=True, layer_norm=True, seed=2)
    params = model.parameters()
    rng = np.random.default_rng(0)
    for name in params:
        if name.startswith("layer_norm"):
            params[name][...] = rng.standard_normal(params[name].shape)
    assert_same_model(from_torch(model.state_dict()), model)
    cell = lstmx.LSTMCell(I, H, layer_norm=True, seed=3)
    assert_same_model(from_torch(cell.state_dict()), cell)


def test_from_torch_cell_has_no_dropout(torch):
    with pytest.raises(TypeError, match="dropout does not apply to an LSTMCell"):
        from_torch(torch.nn.LSTMCell(I, H), dropout=0.1)


# ---------------------------------------------------------------------------------------
# Keras


def keras_run(layers, x, training=False):
    for layer in layers:
        x = layer(x, training=training)
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_to_keras_builds_the_dropouts_and_reads_them_back(keras, bidirectional):
    model = lstmx.LSTM(I, H, num_layers=3, dropout=0.3, recurrent_dropout=0.2,
                       bidirectional=bidirectional, batch_first=True, seed=4)
    layers = to_keras(model)
    kinds = [type(layer).__name__ for layer in layers]
    lstm = "Bidirectional" if bidirectional else "LSTM"
    assert kinds == [lstm, "Dropout", lstm, "Dropout", lstm]
    assert all(layer.rate == 0.3 for layer in layers[1::2])
    for layer in layers[::2]:
        part = layer.forward_layer if bidirectional else layer
        assert part.get_config()["recurrent_dropout"] == 0.2
    x = np.random.default_rng(1).standard_normal((B, T, I)).astype(np.float32)
    assert_allclose(keras_run(layers, x), model(x)[0], **F32)  # the same inference
    back = from_keras_weights(layers, batch_first=True)
    assert (back.config.dropout, back.config.recurrent_dropout) == (0.3, 0.2)
    assert_allclose(back(x)[0], model(x)[0], **F32)


def test_to_keras_cell(keras):
    cell = lstmx.LSTMCell(I, H, seed=5)
    k_cell = to_keras(cell)
    assert type(k_cell).__name__ == "LSTMCell"
    x = np.random.default_rng(2).standard_normal((B, I)).astype(np.float32)
    h0 = np.zeros((B, H), np.float32)
    h, _ = k_cell(x, [h0, h0])
    assert_allclose(h.detach().numpy(), cell(x, (h0, h0))[0], **F32)


def test_keras_recurrent_dropout_draws_a_mask_per_gate(keras):
    """What docs/interop.md says of Keras 3: four masks (one per gate block), each per
    sequence and unit and kept over the steps, where lstmx draws one for all four."""
    layer = keras.layers.LSTM(H, recurrent_dropout=0.5, return_sequences=True)
    layer(np.zeros((B, T, I), np.float32))
    masks = layer.cell.get_recurrent_dropout_mask(np.zeros((B, H), np.float32))
    masks = [m.detach().numpy() if hasattr(m, "detach") else np.asarray(m) for m in masks]
    assert len(masks) == 4 and all(m.shape == (B, H) for m in masks)
    assert all(set(np.unique(m)) <= {0.0, 2.0} for m in masks)  # kept: scaled by 1/(1-p)


def test_keras_input_dropout_is_refused_unless_chosen(keras):
    layers = [keras.layers.LSTM(H, dropout=0.3, return_sequences=True),
              keras.layers.LSTM(H, return_sequences=True)]
    keras_run(layers, np.zeros((B, T, I), np.float32))  # builds them
    with pytest.raises(ValueError, match="one mask per sequence"):
        from_keras_weights(layers)
    model = from_keras_weights(layers, dropout=0.0)
    assert model.config.dropout == 0.0 and model.config.num_layers == 2
    assert from_keras_weights(layers, dropout=0.2).config.dropout == 0.2


def test_keras_dropout_layers_must_be_between_lstms(keras):
    a, b, c = (keras.layers.LSTM(H, return_sequences=True) for _ in range(3))
    keras_run([a, b, c], np.zeros((B, T, I), np.float32))  # builds them
    drop = keras.layers.Dropout
    for layers, message in [
            ([drop(0.3), a, b], "before the first LSTM layer"),
            ([a, b, drop(0.3)], "ends with a Dropout"),
            ([a, drop(0.3), drop(0.3), b], "after another Dropout"),
            ([a, drop(0.3), b, drop(0.1), c], "one dropout rate"),
            ([a, drop(0.3), b, c], "one dropout rate"),  # a gap without one
            ([a, drop(0.3, noise_shape=(B, 1, H)), b], "noise_shape")]:
        with pytest.raises(ValueError, match=message):
            from_keras_weights(layers)
    assert from_keras_weights([a, drop(0.3), b, drop(0.3), c]).config.dropout == \
        pytest.approx(0.3)


def test_keras_recurrent_dropouts_must_agree(keras):
    layers = [keras.layers.LSTM(H, recurrent_dropout=0.1, return_sequences=True),
              keras.layers.LSTM(H, recurrent_dropout=0.2, return_sequences=True)]
    keras_run(layers, np.zeros((B, T, I), np.float32))
    with pytest.raises(ValueError, match="one recurrent_dropout"):
        from_keras_weights(layers)
    assert from_keras_weights(layers, recurrent_dropout=0.1).config.recurrent_dropout == 0.1


def test_keras_cell_with_dropouts_is_refused(keras):
    cell = keras.layers.LSTM(H, recurrent_dropout=0.2)
    cell(np.zeros((B, T, I), np.float32))
    with pytest.raises(ValueError, match="LSTMCell has no dropout"):
        from_keras_weights(cell, cell=True)


def test_keras_weight_lists_take_the_options():
    model = lstmx.LSTM(I, H, num_layers=2, dropout=0.4, recurrent_dropout=0.1, seed=6)
    weights = to_keras_weights(model)  # arrays: the dropouts are not in them
    assert from_keras_weights(weights).config.dropout == 0.0
    back = from_keras_weights(weights, dropout=0.4, recurrent_dropout=0.1)
    assert (back.config.dropout, back.config.recurrent_dropout) == (0.4, 0.1)


@pytest.mark.parametrize("options", NOT_ELSEWHERE)
def test_keras_refuses_what_it_cannot_compute(options):
    with pytest.raises(ValueError, match="Keras' LSTM has no zoneout"):
        to_keras_weights(lstmx.LSTM(I, H, seed=0, **options))


# ---------------------------------------------------------------------------------------
# ONNX


def test_onnx_exports_the_inference_and_records_the_dropouts(ort, tmp_path):
    model = lstmx.LSTM(I, H, num_layers=2, bidirectional=True, dropout=0.3,
                       recurrent_dropout=0.2, seed=7)
    onnx_model = to_onnx(model)
    session = ort.InferenceSession(onnx_model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    Y = session.run(None, {"X": x_of(model)})[0]  # (T, D, B, H)
    assert_allclose(Y.transpose(0, 2, 1, 3).reshape(T, B, 2 * H), model(x_of(model))[0],
                    **F32)
    back = from_onnx(onnx_model)
    assert_same_model(back, model)  # the dropouts included


@pytest.mark.parametrize("options", NOT_ELSEWHERE)
def test_onnx_refuses_what_its_lstm_cannot_compute(options):
    require("onnx")
    with pytest.raises(ValueError, match="clip attribute bounds the gates"):
        to_onnx(lstmx.LSTM(I, H, seed=0, **options))


def test_onnx_metadata_dropouts_are_checked():
    require("onnx")
    from onnx import helper

    from lstmx._interop_onnx import METADATA_KEY
    onnx_model = to_onnx(lstmx.LSTM(I, H, seed=0))
    for saved, message in [({"dropout": "a lot"}, "dropout must be a number"),
                           ({"dropout": True}, "dropout must be a number"),
                           ({"cell": True, "dropout": 0.1}, "cell with dropouts"),
                           ({"dropout": 1.5}, "dropout must be in")]:
        del onnx_model.metadata_props[:]
        helper.set_model_props(onnx_model, {METADATA_KEY: json.dumps(saved)})
        with pytest.raises(ValueError, match=message):
            from_onnx(onnx_model)


# ---------------------------------------------------------------------------------------
# TF1


def tf1_clipped_step(v, x, c_prev, m_prev, forget_bias, cell_clip):
    """rnn_cell_impl.LSTMCell.call without peepholes or projection, with its cell_clip."""
    z = np.concatenate([x, m_prev], 1) @ v["kernel"] + v["bias"]
    i, j, f, o = np.split(z, 4, axis=1)
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    c = sig(f + forget_bias) * c_prev + sig(i) * np.tanh(j)
    c = np.clip(c, -cell_clip, cell_clip)
    return c, sig(o) * np.tanh(c)


def test_tf1_cell_clip_is_lstmx_cell_clip():
    rng = np.random.default_rng(8)
    cell = {"kernel": rng.uniform(-2, 2, (I + H, 4 * H)), "bias": rng.uniform(-1, 1, 4 * H)}
    model = from_tf1(cell, forget_bias=1.0, cell_clip=0.3)
    assert model.config.cell_clip == 0.3
    x = 3 * rng.standard_normal((T, B, I))
    c = m = np.zeros((B, H))
    ys = []
    for x_t in x:
        c, m = tf1_clipped_step(cell, x_t, c, m, 1.0, 0.3)
        ys.append(m)
    assert np.abs(c).max() == pytest.approx(0.3)  # the clip is active
    y, (h_n, c_n) = model(x)
    assert_allclose(y, np.stack(ys), rtol=1e-12, atol=1e-13)
    assert_allclose(c_n[0], c, rtol=1e-12, atol=1e-13)
    back = to_tf1(model, forget_bias=1.0, cell_clip=0.3)[0]
    assert_array_equal(back["kernel"], cell["kernel"])


def test_to_tf1_needs_the_models_cell_clip():
    model = lstmx.LSTM(I, H, cell_clip=2.0, seed=0)
    with pytest.raises(ValueError, match="the model has cell_clip=2.0"):
        to_tf1(model, forget_bias=1.0)
    with pytest.raises(ValueError, match="cell_clip=3"):
        to_tf1(model, forget_bias=1.0, cell_clip=3)
    with pytest.raises(ValueError, match="the model has cell_clip=None"):
        to_tf1(lstmx.LSTM(I, H, seed=0), forget_bias=1.0, cell_clip=2.0)
    with pytest.raises(TypeError, match="cell_clip must be None or a number"):
        to_tf1(model, forget_bias=1.0, cell_clip="2")
    assert from_tf1(to_tf1(model, forget_bias=0.0, cell_clip=2), forget_bias=0.0,
                    cell_clip=2).config.cell_clip == 2.0


@pytest.mark.parametrize("options", [dict(zoneout=0.1), dict(layer_norm=True)])
def test_to_tf1_refuses_zoneout_and_layer_norm(options):
    with pytest.raises(ValueError, match="TF1's LSTMCell has no zoneout"):
        to_tf1(lstmx.LSTM(I, H, seed=0, **options), forget_bias=1.0)
