"""The scikit-learn estimators: scikit-learn's own checks, pipelines, search, early stopping."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from _helpers import require

require("sklearn")
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from lstmx.sklearn import LSTMClassifier, LSTMRegressor  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Small and brief, yet enough for the checks' accuracy bars (R^2 > 0.5, accuracy > 0.83 on
# the training data).
FAST = dict(hidden_size=8, learning_rate=1e-2, max_iter=50)


def _run_with_array_api(estimator, check):
    """check_array_api_input needs SCIPY_ARRAY_API=1 before SciPy is first imported: run it
    in a fresh interpreter rather than skip it."""
    code = (
        "import json, sys\n"
        "from sklearn.utils.estimator_checks import check_array_api_input\n"
        "import lstmx.sklearn as s\n"
        "est = getattr(s, sys.argv[1])(**json.loads(sys.argv[2]))\n"
        "check_array_api_input(sys.argv[1], est, **json.loads(sys.argv[3]))\n")
    env = dict(os.environ, SCIPY_ARRAY_API="1", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", code, type(estimator).__name__,
                           json.dumps(estimator.get_params() | {"dtype": "float64"}),
                           json.dumps(check.keywords)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


@parametrize_with_checks([LSTMRegressor(**FAST), LSTMClassifier(**FAST)])
def test_sklearn_estimator_checks(estimator, check):
    if getattr(check, "func", None) is not None and \
            check.func.__name__ == "check_array_api_input":
        _run_with_array_api(estimator, check)
    else:
        check(estimator)


def windows(n=120, T=8, seed=0):
    """Noisy sine windows and the value after each: a small forecasting problem."""
    rng = np.random.default_rng(seed)
    t = np.arange(n + T) * 0.3
    series = np.sin(t) + 0.05 * rng.standard_normal(t.size)
    X = np.lib.stride_tricks.sliding_window_view(series[:-1], T)[:n]
    return X.copy(), series[T:T + n].copy()


def test_pipeline_grid_search_and_cross_val_score():
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = windows()
    pipe = make_pipeline(StandardScaler(), LSTMRegressor(**FAST, random_state=0))
    scores = cross_val_score(pipe, X, y, cv=2)
    assert scores.shape == (2,) and np.all(scores > 0.8)
    search = GridSearchCV(pipe, {"lstmregressor__hidden_size": [2, 8]}, cv=2).fit(X, y)
    assert search.best_params_ == {"lstmregressor__hidden_size": 8}
    assert search.best_estimator_.predict(X).shape == y.shape


def test_random_state_reproduces_the_fit():
    X, y = windows()
    a = LSTMRegressor(**FAST, random_state=3).fit(X, y)
    b = LSTMRegressor(**FAST, random_state=3).fit(X, y)
    assert_array_equal(a.predict(X), b.predict(X))
    assert a.history_ == b.history_ and a.n_iter_ == len(a.history_["loss"])


def test_three_d_input_and_multi_output():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 6, 3))
    y = np.stack([X[:, -1, 0], X[:, -2:, 1].sum(axis=1)], axis=1)
    model = LSTMRegressor(**FAST, random_state=0).fit(X, y)
    assert model.input_size_ == 3 and model.n_features_in_ == 6
    assert model.predict(X).shape == (100, 2) and model.score(X, y) > 0.8
    with pytest.raises(ValueError, match="2 features per time step.*expecting 3"):
        model.predict(X[:, :, :2])
    with pytest.raises(ValueError, match="must be 2-D .* or 3-D"):
        model.predict(X[..., None])


def test_early_stopping_keeps_the_best_validation_model():
    X, y = windows(seed=1)
    model = LSTMRegressor(hidden_size=8, learning_rate=0.05, max_iter=60, early_stopping=True,
                          validation_fraction=0.25, n_iter_no_change=5, random_state=0)
    model.fit(X, y)
    val = model.history_["val_loss"]
    assert len(val) == len(model.history_["loss"]) == model.n_iter_
    # The kept model is the best one seen: re-scoring the validation split reproduces
    # the minimum of the curve.
    order = np.random.RandomState(0)
    order.randint(np.iinfo(np.int32).max, size=3)  # the seeds drawn by the build
    order = order.permutation(len(X))
    n_val = int(np.ceil(0.25 * len(X)))
    Xv, yv = X[order[:n_val]], y[order[:n_val]]
    mse = np.mean(((model.predict(Xv) - yv) / model.y_scale_[0]) ** 2)
    assert_allclose(mse, min(val), rtol=1e-9)


def test_partial_fit_continues_training():
    X, y = windows()
    model = LSTMRegressor(**FAST, random_state=0)
    for _ in range(30):
        model.partial_fit(X, y)
    assert model.n_iter_ == 30 and model.history_["loss"][-1] < model.history_["loss"][0] / 5
    clf = LSTMClassifier(**FAST, random_state=0)
    labels = np.where(y > 0, "pos", "neg")
    with pytest.raises(ValueError, match="classes must be given"):
        clf.partial_fit(X, labels)
    clf.partial_fit(X[:40], labels[:40], classes=["neg", "pos"])
    for _ in range(20):
        clf.partial_fit(X, labels)
    assert_array_equal(clf.classes_, ["neg", "pos"]) and clf.score(X, labels) > 0.9
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X[:2], ["neg", "zero"])


def test_predict_proba_is_a_distribution():
    X, y = windows()
    labels = np.digitize(y, [-0.5, 0.5])
    clf = LSTMClassifier(**FAST, random_state=0).fit(X, labels)
    p = clf.predict_proba(X)
    assert p.shape == (len(X), 3)
    assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    assert_allclose(np.exp(clf.predict_log_proba(X)), p, rtol=1e-12)
    assert_array_equal(clf.predict(X), clf.classes_[p.argmax(axis=1)])


def test_verbose_prints_each_epoch(capsys):
    X, y = windows(n=20)
    LSTMRegressor(hidden_size=2, max_iter=3, n_iter_no_change=10, verbose=2).fit(X, y)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1", "epoch 2", "epoch 3"]
    assert all("loss" in line for line in lines)


def test_float32_model():
    X, y = windows()
    model = LSTMRegressor(**FAST, dtype=np.float32, random_state=0).fit(X, y)
    assert model.lstm_.dtype == np.float32 and model.predict(X).dtype == np.float64
    assert model.score(X, y) > 0.8


@pytest.mark.parametrize("param,value,error,match", [
    ("hidden_size", 0, ValueError, "hidden_size must be >= 1; got 0"),
    ("max_iter", 2.5, TypeError, "max_iter must be an integer"),
    ("learning_rate", 0.0, ValueError, r"learning_rate must be in \(0.0, inf\)"),
    ("validation_fraction", 1.0, ValueError, "validation_fraction must be in"),
    ("clip_norm", -1.0, ValueError, "clip_norm must be in"),
    ("dtype", np.int32, ValueError, "dtype must be float32 or float64"),
    ("early_stopping", "yes", TypeError, "early_stopping must be a bool"),
])
def test_bad_hyper_parameters_are_named_at_fit(param, value, error, match):
    X, y = windows(n=10)
    model = LSTMRegressor(**{param: value})  # accepted by __init__, as scikit-learn wants
    with pytest.raises(error, match=match):
        model.fit(X, y)


def test_classifier_needs_two_classes():
    X, _ = windows(n=10)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LSTMClassifier().fit(X, np.zeros(10))


def test_diverging_training_is_reported():
    X, y = windows(n=40)
    with pytest.raises(FloatingPointError, match="training diverged: .* not finite"):
        # Steps of 1e38 take float32 weights to the edge of overflow: the outputs become inf.
        LSTMRegressor(hidden_size=4, learning_rate=1e38, max_iter=5,
                      dtype=np.float32).fit(X, y)


def test_sequence_to_sequence_regression_and_tagging():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((150, 6))
    running = np.cumsum(X, axis=1) / np.sqrt(np.arange(1, 7))  # a target at every step
    model = LSTMRegressor(**FAST, return_sequences=True, random_state=0).fit(X, running)
    assert model.predict(X).shape == (150, 6) and model.score(X, running) > 0.9
    two = np.stack([running, -running], axis=-1)
    model.fit(X[..., None], two)
    assert model.predict(X[..., None]).shape == (150, 6, 2)
    with pytest.raises(ValueError, match=r"y must have shape \(n_samples, n_timesteps\)"):
        model.fit(X, running[:, :5])

    tags = np.where(running > 0, "pos", "neg")
    clf = LSTMClassifier(**FAST, return_sequences=True, random_state=0).fit(X, tags)
    assert clf.predict(X).shape == (150, 6) and set(clf.predict(X).ravel()) <= {"pos", "neg"}
    assert clf.predict_proba(X).shape == (150, 6, 2)
    assert clf.score(X, tags) > 0.9
    assert clf.score(X, tags) == np.mean(clf.predict(X) == tags)
