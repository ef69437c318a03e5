"""Whole-model ONNX export: Embedding -> LSTM -> Linear as one graph, run by onnxruntime."""
import numpy as np
import pytest
from numpy.testing import assert_allclose

import lstmx
from _helpers import require

PRECISION = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def run(model, feeds):
    ort = require("onnxruntime")
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


@pytest.mark.parametrize("options", [
    dict(), dict(num_layers=2, bidirectional=True), dict(batch_first=True, num_layers=2),
    dict(peephole=True)])  # (onnxruntime runs LSTM in float32 only)
def test_embedding_lstm_readout_agree_with_onnxruntime(options):
    require("onnx")
    dtype = options.get("dtype", np.float32)
    lstm = lstmx.LSTM(4, 6, seed=1, **options)
    D = 2 if options.get("bidirectional") else 1
    emb = lstmx.Embedding(9, 4, dtype=dtype, seed=0)
    head = lstmx.Linear(D * 6, 9, dtype=dtype, seed=2)
    tokens = np.random.default_rng(0).integers(0, 9, size=(5, 3))  # (T, B)
    if options.get("batch_first"):
        tokens = np.ascontiguousarray(tokens.T)
    lengths = np.array([5, 2, 4])
    model = lstmx.to_onnx([emb, lstm, head], sequence_lens=True)
    got = run(model, {"tokens": tokens.astype(np.int64),
                      "sequence_lens": lengths.astype(np.int32)})
    y, (h, c) = lstm(emb(tokens), lengths=lengths)
    want = head(y)
    # Padding steps: lstmx's y is zero there, so the readout gives the bias; so does ONNX.
    assert got["output"].shape == want.shape and got["output"].dtype == dtype
    assert_allclose(got["output"], want, **PRECISION[dtype])
    if options.get("batch_first"):  # the states as ONNX's layout=1: (B, L*D, H)
        h, c = h.transpose(1, 0, 2), c.transpose(1, 0, 2)
    assert_allclose(got["Y_h"], h, **PRECISION[dtype])
    assert_allclose(got["Y_c"], c, **PRECISION[dtype])
    # The LSTM part imports back as it was.
    back = lstmx.from_onnx(model)
    for k, v in lstm.state_dict().items():
        assert_allclose(back.state_dict()[k], v, rtol=0, atol=0)


def test_readout_only_and_embedding_only():
    require("onnx")
    lstm = lstmx.LSTM(3, 5, seed=0)
    head = lstmx.Linear(5, 2, bias=False, seed=1)
    x = np.random.default_rng(1).standard_normal((4, 2, 3)).astype(np.float32)
    got = run(lstmx.to_onnx([lstm, head], initial_state=True),
              {"X": x, "initial_h": np.zeros((1, 2, 5), np.float32),
               "initial_c": np.ones((1, 2, 5), np.float32)})
    y, _ = lstm(x, (np.zeros((1, 2, 5), np.float32), np.ones((1, 2, 5), np.float32)))
    assert_allclose(got["output"], head(y), **PRECISION[np.float32])

    emb = lstmx.Embedding(7, 3, seed=0)
    tokens = np.array([[1, 6], [0, 3]])
    got = run(lstmx.to_onnx((emb, lstm)), {"tokens": tokens})
    y, _ = lstm(emb(tokens))
    assert_allclose(got["Y"].transpose(0, 2, 1, 3).reshape(2, 2, 5), y,
                    **PRECISION[np.float32])


@pytest.mark.parametrize("modules,error,match", [
    (lambda: [lstmx.Linear(3, 2), lstmx.LSTM(2, 3)], TypeError, r"\[Embedding, LSTM, Linear\]"),
    (lambda: [lstmx.Embedding(5, 4), lstmx.LSTM(3, 3)], ValueError, "vectors have 4 features"),
    (lambda: [lstmx.LSTM(2, 3, bidirectional=True), lstmx.Linear(3, 1)], ValueError,
     "outputs 6 features"),
    (lambda: [lstmx.LSTM(2, 3), lstmx.Linear(3, 1, dtype=np.float64)], ValueError,
     "one dtype"),
    (lambda: [lstmx.LSTM(2, 3), lstmx.LSTM(3, 3)], TypeError, "got"),
])
def test_mismatched_modules_are_refused(modules, error, match):
    require("onnx")
    with pytest.raises(error, match=match):
        lstmx.to_onnx(modules())
