"""PyTorch parity where users trip: unbatched sequences, whole-model state dicts, masked MSE."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import lstmx
from _helpers import require, tolerances
from lstmx.losses import mse_loss


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_unbatched_sequence_matches_torch(batch_first, bidirectional):
    torch = require("torch")
    torch.manual_seed(0)
    ref = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=bidirectional,
                        batch_first=batch_first, dtype=torch.float64)
    lstm = lstmx.from_torch(ref, dtype=np.float64)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 3))
    D = 2 if bidirectional else 1
    h0, c0 = rng.standard_normal((2 * D, 5)), rng.standard_normal((2 * D, 5))
    y, (h, c) = lstm(x, (h0, c0))
    with torch.no_grad():
        ty, (th, tc) = ref(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
    assert y.shape == (7, D * 5) and h.shape == c.shape == (2 * D, 5)
    for ours, theirs in ((y, ty), (h, th), (c, tc)):
        assert_allclose(ours, theirs.numpy(), **tolerances(np.float64))


def test_unbatched_training_is_a_batch_of_one():
    lstm = lstmx.LSTM(3, 4, num_layers=2, dtype=np.float64, seed=0)
    rng = np.random.default_rng(1)
    x, dy = rng.standard_normal((6, 3)), rng.standard_normal((6, 4))
    state = (rng.standard_normal((2, 4)), rng.standard_normal((2, 4)))
    dstate = (rng.standard_normal((2, 4)), None)
    y, (h, c), cache = lstm.forward_train(x, state)
    dx, (dh0, dc0), grads = lstm.backward(cache, dy, dstate)
    y1, (h1, c1), cache1 = lstm.forward_train(x[:, None], (state[0][:, None],
                                                           state[1][:, None]))
    dx1, (dh1, dc1), grads1 = lstm.backward(cache1, dy[:, None], (dstate[0][:, None], None))
    for a, b in ((y, y1[:, 0]), (h, h1[:, 0]), (c, c1[:, 0]), (dx, dx1[:, 0]),
                 (dh0, dh1[:, 0]), (dc0, dc1[:, 0])):
        assert_array_equal(a, b)
    for k in grads:
        assert_array_equal(grads[k], grads1[k])


def test_unbatched_shapes_are_checked():
    lstm = lstmx.LSTM(3, 4, num_layers=2)
    with pytest.raises(ValueError, match=r"x must have shape \(T, 3\) \(seq_len, input_size\), "
                                         "one unbatched sequence"):
        lstm(np.zeros((5, 2), np.float32))
    with pytest.raises(ValueError, match=r"state\[0\] \(h0\) must be 2-D with shape \(2, 4\)"):
        lstm(np.zeros((5, 3), np.float32), (np.zeros((2, 1, 4)), np.zeros((2, 4))))
    _, _, cache = lstm.forward_train(np.zeros((5, 2, 3), np.float32))
    with pytest.raises(ValueError, match="dy must be 3-D, .* a batch of 2; got 2-D"):
        lstm.backward(cache, np.zeros((5, 4), np.float32))


def test_from_torch_prefix_reads_a_whole_models_state_dict():
    torch = require("torch")

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 3)
            self.lstm = torch.nn.LSTM(3, 4, num_layers=2)
            self.head = torch.nn.Linear(4, 10)

    model = Tagger()
    state = model.state_dict()
    lstm = lstmx.from_torch(state, prefix="lstm.")
    assert lstm.config.num_layers == 2
    for k, v in model.lstm.state_dict().items():
        assert_array_equal(lstm.state_dict()[k], v.numpy())
    with pytest.raises(ValueError, match=r"prefix 'rnn\.'; its prefixes are \['emb\.', "
                                         r"'head\.', 'lstm\.'\]"):
        lstmx.from_torch(state, prefix="rnn.")
    with pytest.raises(TypeError, match="prefix must be a non-empty string"):
        lstmx.from_torch(state, prefix="")


def test_masked_mse_counts_only_masked_elements():
    torch = require("torch")
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((5, 3, 2)), rng.standard_normal((5, 3, 2))
    mask = rng.random((5, 3)) < 0.6  # (T, B): steps within each sequence, say
    loss, grad = mse_loss(pred, target, mask=mask)
    t = torch.tensor(pred, requires_grad=True)
    ref = torch.nn.functional.mse_loss(t[torch.from_numpy(mask)],
                                       torch.from_numpy(target)[torch.from_numpy(mask)])
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    assert_allclose(grad, t.grad.numpy(), rtol=1e-12)
    # Masked-out elements do not matter, even when they are not finite.
    pred[~mask] = np.nan
    loss2, grad2 = mse_loss(pred, target, mask=mask, reduction="sum")
    assert np.isfinite(loss2) and np.all(grad2[~mask] == 0)
    assert loss2 == pytest.approx(loss * mask.sum() * 2, rel=1e-12)
    full = np.ones((5, 3, 2), bool)
    assert mse_loss(pred * 0, target, mask=~full)[0] == 0.0


@pytest.mark.parametrize("mask,error,match", [
    (np.ones((5, 4), bool), ValueError, r"mask must have the shape of input \(5, 3, 2\) or "
                                        r"of its leading axes"),
    (np.ones((5, 3), int), TypeError, "mask must be a bool array; got dtype int"),
])
def test_bad_mse_mask(mask, error, match):
    with pytest.raises(error, match=match):
        mse_loss(np.zeros((5, 3, 2)), np.zeros((5, 3, 2)), mask=mask)
