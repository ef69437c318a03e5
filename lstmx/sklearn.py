"""scikit-learn estimators: an LSTM with a linear readout, trained by Adam, behind fit/predict.

``LSTMRegressor`` and ``LSTMClassifier`` read each row of ``X`` as a sequence: a 2-D ``X``
(n_samples, n_timesteps) is a univariate series per sample, a 3-D ``X`` (n_samples,
n_timesteps, n_features) a multivariate one. They are ordinary scikit-learn estimators
(``get_params``, ``clone``, ``Pipeline``, ``GridSearchCV``, ``cross_val_score``), and pass
``sklearn.utils.estimator_checks.check_estimator``. Needs scikit-learn (``pip install
lstmx[sklearn]``).
"""
from __future__ import annotations

import numpy as np

try:
    import sklearn  # noqa: F401
except ImportError as err:
    raise ImportError("lstmx.sklearn needs scikit-learn: pip install scikit-learn (or "
                      "lstmx[sklearn])") from err
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import r2_score
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from lstmx._sklearn_base import _LSTMEstimator
from lstmx.losses import cross_entropy, mse_loss

__all__ = ["LSTMRegressor", "LSTMClassifier"]


class LSTMRegressor(RegressorMixin, _LSTMEstimator):
    """Sequence -> value regression: an LSTM read out by a ``Linear`` at the last time step.

    The targets are standardised for training (mean 0, variance 1 per output) and the
    predictions mapped back, so targets of any scale train alike. Inputs are not scaled:
    put a ``StandardScaler`` before it in a ``Pipeline`` when features are large.

    Parameters
    ----------
    hidden_size : int, default 32
        H, the LSTM's hidden units.
    num_layers : int, default 1
        Stacked LSTM layers.
    return_sequences : bool, default False
        Sequence -> sequence: read out every time step, so that ``y`` (and the predictions)
        are (n_samples, n_timesteps) or (n_samples, n_timesteps, n_outputs). The LSTM runs
        forwards only, so step t is predicted from steps 0 to t.
    max_iter : int, default 200
        Largest number of epochs (passes over the training data).
    batch_size : int, default 32
        Samples per Adam step (fewer in the last batch of an epoch).
    learning_rate : float, default 1e-3
        Adam's step size.
    weight_decay : float, default 0
        Adam's L2 penalty.
    clip_norm : float or None, default None
        Clip the gradients' global norm to this before each step.
    early_stopping : bool, default False
        Set aside ``validation_fraction`` of the training data and stop when its loss has not
        improved by ``tol`` for ``n_iter_no_change`` epochs, keeping the best model seen.
        Without it, training stops when the training loss stalls the same way.
    validation_fraction : float, default 0.1
    n_iter_no_change : int, default 10
    tol : float, default 1e-4
    dtype : float32 or float64, default float64
        The dtype of the model and its computations (float32 is about twice as fast).
    random_state : int, RandomState or None
        Seeds the initialisation, the shuffling and the validation split.
    verbose : int, default 0
        1: a progress bar (tqdm, if installed, else as 2); 2: one line per epoch.

    Attributes
    ----------
    lstm_ : lstmx.LSTM
        ``batch_first=True``, input size ``input_size_``.
    head_ : lstmx.Linear
        (H -> n_outputs), on standardised targets.
    y_mean_, y_scale_ : arrays (n_outputs,)
        The standardisation of the targets.
    history_ : dict of lists
        ``loss`` per epoch (MSE of the standardised targets) and, with early stopping,
        ``val_loss``.
    n_iter_ : int
        Epochs run.
    n_features_in_ : int
        n_timesteps, the length of the training sequences: every ``X`` must have it.
    input_size_ : int
        Features per time step (1 for a 2-D ``X``).

    Examples
    --------
    >>> import numpy as np
    >>> from lstmx.sklearn import LSTMRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 10))        # 200 series of 10 steps
    >>> y = X[:, -3:].sum(axis=1)                 # the sum of the last three
    >>> model = LSTMRegressor(hidden_size=16, learning_rate=1e-2, random_state=0).fit(X, y)
    >>> bool(model.score(X, y) > 0.95)
    True
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    _multi_output = True
    _FITTED_ARRAYS = ("y_mean_", "y_scale_", "_y_1d")

    def _loss(self, pred, target):
        return mse_loss(pred, target)

    def _targets(self, y, dtype, reset):
        """y standardised, with an output axis: (n, O), or (n, T, O) with return_sequences."""
        y = np.asarray(y, dtype=np.float64)
        base = 2 if self.return_sequences else 1  # the axes before the output axis
        if y.ndim not in (base, base + 1):
            raise ValueError(f"y must be {base}-D or {base + 1}-D; got shape {y.shape}")
        self._y_1d = y.ndim == base if reset else self._y_1d
        y2 = y.reshape(y.shape[:base] + (-1,))
        if reset:
            axes = tuple(range(base))
            self.y_mean_ = y2.mean(axis=axes)
            scale = y2.std(axis=axes)
            self.y_scale_ = np.where(scale > 0, scale, 1.0)
        elif y2.shape[-1] != self.y_mean_.shape[0]:
            raise ValueError(f"y has {y2.shape[-1]} outputs, but {type(self).__name__} was "
                             f"fitted with {self.y_mean_.shape[0]}")
        return ((y2 - self.y_mean_) / self.y_scale_).astype(dtype)

    def fit(self, X, y):
        """Train a new model on sequences ``X`` and targets ``y``.

        Parameters
        ----------
        X : array (n_samples, n_timesteps) or (n_samples, n_timesteps, n_features)
        y : array (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self
        """
        dtype = self._check_params()
        X, y = self._validate_X(X, reset=True, y=y)
        T = self._targets(y, dtype, reset=True)
        return self._fit(X, T, dtype, T.shape[-1], check_random_state(self.random_state))

    def partial_fit(self, X, y):
        """One epoch over ``X`` and ``y``; the first call builds the model (and fixes the
        target standardisation from its ``y``).

        Returns
        -------
        self
        """
        dtype = self._check_params()
        first = not hasattr(self, "lstm_")
        X, y = self._validate_X(X, reset=first, y=y)
        T = self._targets(y, dtype, reset=first)
        return self._partial_fit(X, T, dtype, T.shape[-1],
                                 check_random_state(self.random_state))

    def predict(self, X):
        """Predicted targets: (n_samples,), or (n_samples, n_outputs) for a 2-D ``y``."""
        check_is_fitted(self)
        X, _ = self._validate_X(X, reset=False)
        y = self._outputs(X) * self.y_scale_ + self.y_mean_
        return y[..., 0] if self._y_1d else y

    def score(self, X, y, sample_weight=None):
        """R^2 of the predictions, averaged over outputs (and time steps, with
        ``return_sequences``), as ``RegressorMixin.score``."""
        pred = self.predict(X)
        y = np.asarray(y)
        return r2_score(y.reshape(len(y), -1), pred.reshape(len(pred), -1),
                        sample_weight=sample_weight)


class LSTMClassifier(ClassifierMixin, _LSTMEstimator):
    """Sequence -> label classification: an LSTM whose last time step a ``Linear`` reads
    out as class logits, trained with softmax cross-entropy.

    Parameters
    ----------
    hidden_size, num_layers, max_iter, batch_size, learning_rate, weight_decay, clip_norm,
    early_stopping, validation_fraction, n_iter_no_change, tol, dtype, random_state, verbose
        As for ``LSTMRegressor``; the loss watched is the cross-entropy (nats).
    return_sequences : bool, default False
        Sequence -> sequence: a label for every time step, ``y`` (n_samples, n_timesteps)
        (tagging, say); ``predict`` returns that shape and ``score`` counts every step.

    Attributes
    ----------
    classes_ : array (n_classes,)
        The labels, sorted; ``predict`` returns them.
    lstm_, head_, history_, n_iter_, n_features_in_, input_size_
        As for ``LSTMRegressor`` (``head_`` has n_classes outputs).

    Examples
    --------
    >>> import numpy as np
    >>> from lstmx.sklearn import LSTMClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 8))
    >>> y = np.where(X[:, :4].sum(axis=1) > 0, "up", "down")
    >>> clf = LSTMClassifier(hidden_size=16, learning_rate=1e-2, random_state=0).fit(X, y)
    >>> clf.classes_
    array(['down', 'up'], dtype='<U4')
    >>> bool(clf.score(X, y) > 0.9)
    True
    """

    _multi_output = False  # scikit-learn then warns of a column-vector y, and flattens it
    _FITTED_ARRAYS = ("classes_",)

    def _loss(self, logits, target):
        return cross_entropy(logits, target)

    def _encode(self, y, classes):
        y = np.asarray(y)
        missing = np.setdiff1d(y, classes)
        if missing.size:
            raise ValueError(f"y has labels {missing.tolist()} that are not in classes "
                             f"{classes.tolist()}")
        return np.searchsorted(classes, y)

    def _check_y(self, y):
        check_classification_targets(np.ravel(y) if self.return_sequences else y)
        return y

    def fit(self, X, y):
        """Train a new model on sequences ``X`` and labels ``y``.

        Parameters
        ----------
        X : array (n_samples, n_timesteps) or (n_samples, n_timesteps, n_features)
        y : array (n_samples,) of labels (at least two distinct ones)

        Returns
        -------
        self
        """
        dtype = self._check_params()
        X, y = self._validate_X(X, reset=True, y=y)
        y = self._check_y(y)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes in "
                             f"y; got 1 class ({classes[0]!r})")
        self.classes_ = classes
        T = self._encode(y, classes)
        return self._fit(X, T, dtype, len(classes), check_random_state(self.random_state))

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``X`` and ``y``.

        Parameters
        ----------
        X, y : as for ``fit``
        classes : array of labels
            Every label that any call will see; required on the first call only.

        Returns
        -------
        self
        """
        dtype = self._check_params()
        first = not hasattr(self, "lstm_")
        if first:
            if classes is None:
                raise ValueError("classes must be given on the first call of partial_fit "
                                 "(every label any call will see)")
            classes = np.unique(classes)
            if len(classes) < 2:
                raise ValueError(f"classes must hold at least 2 classes; got "
                                 f"{classes.tolist()}")
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes {np.unique(classes).tolist()} differ from those of "
                             f"the first call, {self.classes_.tolist()}")
        X, y = self._validate_X(X, reset=first, y=y)
        y = self._check_y(y)
        if first:
            self.classes_ = classes
        T = self._encode(y, self.classes_)
        return self._partial_fit(X, T, dtype, len(self.classes_),
                                 check_random_state(self.random_state))

    def predict_proba(self, X):
        """Class probabilities, (n_samples, n_classes), columns in the order of ``classes_``."""
        check_is_fitted(self)
        X, _ = self._validate_X(X, reset=False)
        z = self._outputs(X)
        z -= z.max(axis=-1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=-1, keepdims=True)
        return p

    def predict_log_proba(self, X):
        """Logarithms of ``predict_proba``."""
        check_is_fitted(self)
        X, _ = self._validate_X(X, reset=False)
        z = self._outputs(X)
        z -= z.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))

    def predict(self, X):
        """The most probable label of each sequence, (n_samples,), or of each step,
        (n_samples, n_timesteps), with ``return_sequences``."""
        check_is_fitted(self)
        X, _ = self._validate_X(X, reset=False)
        return self.classes_[np.argmax(self._outputs(X), axis=-1)]

    def score(self, X, y, sample_weight=None):
        """Accuracy: the fraction of labels predicted right (of every step's, with
        ``return_sequences``), as ``ClassifierMixin.score``."""
        from sklearn.metrics import accuracy_score
        pred = self.predict(X)
        if self.return_sequences:
            y = np.asarray(y)
            w = None if sample_weight is None else np.repeat(sample_weight, y.shape[1])
            return accuracy_score(y.ravel(), pred.ravel(), sample_weight=w)
        return accuracy_score(y, pred, sample_weight=sample_weight)
