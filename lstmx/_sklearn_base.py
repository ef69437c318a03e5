"""The scikit-learn estimators' base: parameter and input checks, the model, training, checkpoints.

``_LSTMEstimator`` is what ``lstmx.sklearn``'s ``LSTMRegressor`` and ``LSTMClassifier`` share:
they add the loss, the target encoding and ``fit``/``predict``. Needs scikit-learn; import
the estimators from ``lstmx.sklearn``, which says so when it is missing.
"""
from __future__ import annotations

import numbers
import sys

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_array, validate_data

from lstmx._config import _check_int
from lstmx.layers import LSTM
from lstmx.modules import Linear
from lstmx.optim import Adam, clip_grad_norm

# Inference in chunks of samples: memory stays bounded for any n_samples.
_PREDICT_CHUNK = 4096


def _check_real(name, value, low, high=None, low_open=False, high_open=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    value = float(value)
    bad = (value <= low if low_open else value < low) or not np.isfinite(value)
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        lo, hi = "(" if low_open else "[", ")" if high_open or high is None else "]"
        raise ValueError(f"{name} must be in {lo}{low}, {high if high is not None else 'inf'}"
                         f"{hi}; got {value}")
    return value


class _Progress:
    """One line per epoch (verbose >= 2), or a tqdm bar when tqdm is installed (verbose 1)."""

    def __init__(self, verbose, total, desc):
        self.verbose, self.bar = verbose, None
        if verbose == 1:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                self.verbose = 2
            else:
                self.bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr)

    def update(self, epoch, logs):
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
            self.bar.update()
        elif self.verbose >= 2:
            print(f"epoch {epoch}: " + ", ".join(f"{k} {v:.6g}" for k, v in logs.items()))

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _LSTMEstimator(BaseEstimator):
    """What the regressor and the classifier share: validation, the model, the training loop."""

    def __init__(self, hidden_size=32, num_layers=1, *, return_sequences=False, max_iter=200,
                 batch_size=32, learning_rate=1e-3, weight_decay=0.0, clip_norm=None,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, tol=1e-4,
                 dtype=np.float64, random_state=None, verbose=0):
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.return_sequences = return_sequences
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.clip_norm = clip_norm
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags

    # -- validation -------------------------------------------------------------------------

    def _check_params(self):
        """The hyper-parameters, checked at fit (scikit-learn keeps __init__ and set_params
        free of checks)."""
        _check_int("hidden_size", self.hidden_size, 1)
        _check_int("num_layers", self.num_layers, 1)
        if not isinstance(self.return_sequences, (bool, np.bool_)):
            raise TypeError(f"return_sequences must be a bool; got {self.return_sequences!r}")
        _check_int("max_iter", self.max_iter, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_real("learning_rate", self.learning_rate, 0.0, low_open=True)
        _check_real("weight_decay", self.weight_decay, 0.0)
        if self.clip_norm is not None:
            _check_real("clip_norm", self.clip_norm, 0.0, low_open=True)
        if not isinstance(self.early_stopping, (bool, np.bool_)):
            raise TypeError(f"early_stopping must be a bool; got {self.early_stopping!r}")
        _check_real("validation_fraction", self.validation_fraction, 0.0, 1.0,
                    low_open=True, high_open=True)
        _check_int("n_iter_no_change", self.n_iter_no_change, 1)
        _check_real("tol", self.tol, 0.0)
        _check_int("verbose", self.verbose, 0)
        dtype = np.dtype(self.dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64; got {dtype}")
        return dtype

    def _as_sequences(self, X):
        """(n, T) -> (n, T, 1); (n, T, F) as it is; anything else is refused."""
        if X.ndim == 2:
            return X[:, :, None]
        if X.ndim == 3:
            return X
        raise ValueError(f"X must be 2-D (n_samples, n_timesteps) or 3-D (n_samples, "
                         f"n_timesteps, n_features); got {X.ndim}-D with shape {X.shape}")

    def _validate_X(self, X, reset, y=None):
        """X as (n, T, F) in the model's dtype; with ``y``, also y checked against X."""
        common = dict(reset=reset, allow_nd=True, dtype=[np.float64, np.float32])
        if y is None and reset:
            # Fitting without a target is an error; say so in scikit-learn's words.
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target "
                             "y is None")
        if y is None:
            X = validate_data(self, X, **common)
        elif self.return_sequences:  # y (n, T[, O]): scikit-learn's checks stop at 2-D
            X = validate_data(self, X, **common)
            y = check_array(y, ensure_2d=False, allow_nd=True, input_name="y",
                            dtype=np.float64 if self._multi_output else None)
            if y.shape[:2] != X.shape[:2] or y.ndim > 3:
                raise ValueError(f"with return_sequences, y must have shape (n_samples, "
                                 f"n_timesteps) or (n_samples, n_timesteps, n_outputs) = "
                                 f"{X.shape[:2]} + (n_outputs,); got {y.shape}")
        else:
            X, y = validate_data(self, X, y, multi_output=self._multi_output, **common)
        X = self._as_sequences(X)
        if reset:
            self.n_timesteps_in_, self.input_size_ = X.shape[1], X.shape[2]
        elif X.shape[2] != self.input_size_:
            raise ValueError(f"X has {X.shape[2]} features per time step, but "
                             f"{type(self).__name__} is expecting {self.input_size_} features "
                             "per time step as input")
        return X, y

    # -- the model and its training ---------------------------------------------------------

    def _build(self, dtype, n_outputs, rng):
        seeds = rng.randint(np.iinfo(np.int32).max, size=3)
        self.lstm_ = LSTM(self.input_size_, self.hidden_size, num_layers=self.num_layers,
                          batch_first=True, dtype=dtype, seed=int(seeds[0]))
        self.head_ = Linear(self.hidden_size, n_outputs, dtype=dtype, seed=int(seeds[1]))
        self._optimizer = Adam([self.lstm_.parameters(), self.head_.parameters()],
                               lr=self.learning_rate, weight_decay=self.weight_decay)
        self._shuffle_rng = np.random.default_rng(int(seeds[2]))
        self.n_iter_ = 0
        self.history_ = {"loss": []}
        if self.early_stopping:
            self.history_["val_loss"] = []

    def _outputs(self, X):
        """The readout of the last time step, (n, O), or of every step, (n, T, O), in
        chunks."""
        dtype = self.lstm_.dtype
        out = []
        for start in range(0, X.shape[0], _PREDICT_CHUNK):
            y, _ = self.lstm_(X[start:start + _PREDICT_CHUNK].astype(dtype, copy=False))
            out.append(self.head_(y if self.return_sequences else y[:, -1]))
        return np.concatenate(out).astype(np.float64)

    def _train_step(self, xb, tb):
        """One Adam step on a batch; returns the batch's loss."""
        # A diverging run overflows somewhere in here; it is reported once, as an error
        # naming the cure (_check_finite), not as a stream of NumPy warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            y, _, cache = self.lstm_.forward_train(xb)
            pred, head_cache = self.head_.forward_train(y if self.return_sequences
                                                        else y[:, -1])
            loss, dpred = self._loss(pred, tb)
            self._check_finite(loss)
            dfeat, g_head = self.head_.backward(head_cache, dpred)
            if self.return_sequences:
                dy = dfeat
            else:
                dy = np.zeros(y.shape, y.dtype)
                dy[:, -1] = dfeat  # only the last step feeds the readout
            _, _, g_lstm = self.lstm_.backward(cache, dy)
            grads = [g_lstm, g_head]
            if self.clip_norm is not None:
                clip_grad_norm(grads, self.clip_norm)
            self._optimizer.step(grads)
        return loss

    def _check_finite(self, loss=None):
        """Raise if the loss or (without a loss) any parameter is not finite."""
        if loss is None:
            params = [*self.lstm_.parameters().values(), *self.head_.parameters().values()]
            if all(np.isfinite(p).all() for p in params):
                return
            what = "a parameter"
        elif np.isfinite(loss):
            return
        else:
            what = f"the training loss ({loss})"
        raise FloatingPointError(f"training diverged: {what} is not finite after "
                                 f"{self._optimizer.steps} steps; lower learning_rate (now "
                                 f"{self.learning_rate}) or set clip_norm")

    def _epoch(self, X, T):
        """One pass over (X, T) in shuffled mini-batches; the mean loss."""
        n = X.shape[0]
        order = self._shuffle_rng.permutation(n)
        total = 0.0
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            total += self._train_step(X[idx], T[idx]) * len(idx)
        self.n_iter_ += 1
        return total / n

    def _fit(self, X, T, dtype, n_outputs, rng):
        """Train from scratch on sequences X and encoded targets T (float or int)."""
        self._build(dtype, n_outputs, rng)
        X = X.astype(dtype, copy=False)
        if self.early_stopping:
            n_val = int(np.ceil(self.validation_fraction * X.shape[0]))
            if X.shape[0] - n_val < 1:
                raise ValueError(f"early_stopping needs at least one training sample after "
                                 f"setting aside validation_fraction="
                                 f"{self.validation_fraction}; got n_samples = {X.shape[0]}")
            order = rng.permutation(X.shape[0])
            X_val, T_val = X[order[:n_val]], T[order[:n_val]]
            X, T = X[order[n_val:]], T[order[n_val:]]
        best, best_params, stale = np.inf, None, 0
        progress = _Progress(self.verbose, self.max_iter, type(self).__name__)
        try:
            for epoch in range(1, self.max_iter + 1):
                loss = self._epoch(X, T)
                self.history_["loss"].append(loss)
                logs = {"loss": loss}
                watched = loss
                if self.early_stopping:
                    watched = self._loss(self._outputs(X_val).astype(dtype), T_val)[0]
                    self.history_["val_loss"].append(watched)
                    logs["val_loss"] = watched
                progress.update(epoch, logs)
                if watched < best - self.tol:
                    best, stale = watched, 0
                    if self.early_stopping:
                        best_params = (self.lstm_.state_dict(), self.head_.state_dict())
                else:
                    stale += 1
                    if stale >= self.n_iter_no_change:
                        break
        finally:
            progress.close()
        if best_params is not None:  # early stopping keeps the best model seen
            self.lstm_.load_state_dict(best_params[0])
            self.head_.load_state_dict(best_params[1])
        self._check_finite()
        return self

    def _partial_fit(self, X, T, dtype, n_outputs, rng):
        """One epoch, building the model on the first call."""
        if not hasattr(self, "lstm_"):
            self._build(dtype, n_outputs, rng)
        loss = self._epoch(X.astype(self.lstm_.dtype, copy=False), T)
        self.history_["loss"].append(loss)
        self._check_finite()
        return self


    # -- checkpoints (lstmx.checkpoint) -------------------------------------------------------

    _FITTED = ("n_features_in_", "n_timesteps_in_", "input_size_", "n_iter_", "history_")
    _FITTED_ARRAYS: tuple = ()

    def _checkpoint_state(self) -> dict:
        """The hyper-parameters and, once fitted, everything ``partial_fit`` continues from."""
        from lstmx.checkpoint import _rng_state
        params = self.get_params()
        params["dtype"] = np.dtype(params["dtype"]).name
        if not (params["random_state"] is None or
                isinstance(params["random_state"], numbers.Integral)):
            raise TypeError("an estimator checkpoints with random_state an int or None; got "
                            f"{type(params['random_state']).__name__}")
        state = {"params": params, "fitted": None}
        if hasattr(self, "lstm_"):
            fitted = {name: getattr(self, name) for name in self._FITTED}
            for name in self._FITTED_ARRAYS + ("feature_names_in_",):
                if hasattr(self, name):
                    value = np.asarray(getattr(self, name))
                    # Labels of object dtype (strings from pandas, say) as a string array.
                    fitted[name] = value.astype(str) if value.dtype == object else value
            fitted.update(lstm=self.lstm_.state_dict(), head=self.head_.state_dict(),
                          optimizer=self._optimizer.state_dict(),
                          shuffle_rng=_rng_state(self._shuffle_rng))
            state["fitted"] = fitted
        return state

    def _checkpoint_restore(self, state, where):
        """Check ``state`` against this class; return a function that applies it."""
        from lstmx.checkpoint import _restore_rng
        params = dict(state["params"])
        if set(params) != set(self.get_params()):
            raise ValueError(f"{where}: the estimator's parameters {sorted(params)} are not "
                             f"those of {type(self).__name__}")
        try:
            params["dtype"] = np.dtype(params["dtype"]).type
        except TypeError as err:
            raise ValueError(f"{where}: dtype {params['dtype']!r} is not a dtype") from err
        probe = type(self)(**params)
        fitted = state["fitted"]
        if fitted is not None:
            dtype = probe._check_params()
            probe.input_size_ = fitted["input_size_"]
            n_out = np.shape(fitted["head"]["weight"])[0]
            probe._build(dtype, n_out, check_random_state(0))
            try:
                probe.lstm_.load_state_dict(fitted["lstm"])
                probe.head_.load_state_dict(fitted["head"])
                probe._optimizer.load_state_dict(fitted["optimizer"])
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"{where}: the fitted model does not match its "
                                 f"parameters: {err}") from err
            probe._shuffle_rng, set_state = _restore_rng(fitted["shuffle_rng"], None, where)
            set_state()
            for name in self._FITTED + self._FITTED_ARRAYS + ("feature_names_in_",):
                if name in fitted:
                    setattr(probe, name, fitted[name])
            probe.history_ = {k: list(v) for k, v in probe.history_.items()}

        def apply():
            for key in [k for k in vars(self) if k.endswith("_") or k.startswith("_")]:
                delattr(self, key)
            self.__dict__.update(vars(probe))
        return apply
