"""The layers an LSTM needs around it: a ``Linear`` readout and an ``Embedding`` for tokens.

They follow ``LSTM``'s conventions: parameters are live NumPy arrays named as in PyTorch
(``parameters()``, ``state_dict()``, ``load_state_dict()``), ``forward_train`` returns the
outputs and a cache, and ``backward(cache, dy)`` returns the gradients. A cache holds its own
copies of what ``backward`` reads, so an optimiser step in between cannot corrupt it.
"""
from __future__ import annotations

import numpy as np

from lstmx._config import _check_int, check_dtype
from lstmx._validation import as_float_array
from lstmx.layers import _Parameterised

__all__ = ["Linear", "Embedding"]


class _LinearCache:
    __slots__ = ("x", "weight", "bias")

    def __init__(self, x, weight, bias):
        self.x, self.weight, self.bias = x, weight, bias


class _EmbeddingCache:
    __slots__ = ("indices", "shape")

    def __init__(self, indices, shape):
        self.indices, self.shape = indices, shape


class Linear(_Parameterised):
    r"""An affine map of the last axis, :math:`y = x W^T + b`, as ``torch.nn.Linear``.

    Parameters
    ----------
    in_features, out_features : int
        I and O.
    bias : bool, default True
        Whether to add ``bias``.
    dtype : float32 or float64, default float32
        Dtype of the parameters and the computation; inputs of the other float dtype are cast.
    seed : int or None
        Seed of the initialisation: every parameter uniform in (-1/sqrt(I), 1/sqrt(I)), as
        PyTorch.

    Notes
    -----
    Parameters: ``weight`` (O, I) and ``bias`` (O,). Inputs have any number of leading axes:
    ``x`` (..., I) gives ``y`` (..., O), so the readout of a whole LSTM output (T, B, H) is one
    matrix product.

    Examples
    --------
    >>> import numpy as np, lstmx
    >>> head = lstmx.Linear(3, 2, seed=0)
    >>> y, cache = head.forward_train(np.ones((5, 4, 3)))
    >>> dx, grads = head.backward(cache, np.ones_like(y))
    >>> dx.shape, grads["weight"].shape
    ((5, 4, 3), (2, 3))
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, seed=None):
        self.in_features = _check_int("in_features", in_features, 1)
        self.out_features = _check_int("out_features", out_features, 1)
        if not isinstance(bias, (bool, np.bool_)):
            raise TypeError(f"bias must be a bool; got {type(bias).__name__} {bias!r}")
        dtype = check_dtype(dtype)
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(self.in_features)
        self._params = {"weight": rng.uniform(-bound, bound, (self.out_features,
                                                              self.in_features)).astype(dtype)}
        if bias:
            self._params["bias"] = rng.uniform(-bound, bound, self.out_features).astype(dtype)

    def __repr__(self):
        return (f"Linear({self.in_features}, {self.out_features}, bias={'bias' in self._params}"
                f", dtype={self.dtype.name})")

    @property
    def dtype(self) -> np.dtype:
        return self._params["weight"].dtype

    def _input(self, x, copy):
        x = np.asarray(x)
        shape = ("N",) * max(x.ndim - 1, 0) + (self.in_features,)
        return as_float_array("x", x, self.dtype, shape, "(..., in_features)", copy=copy)

    def _apply(self, x):
        # One 2-D product over all leading axes (a 3-D matmul would loop over them).
        y = x.reshape(-1, self.in_features) @ self._params["weight"].T
        if "bias" in self._params:
            y += self._params["bias"]
        return y.reshape(x.shape[:-1] + (self.out_features,))

    def __call__(self, x):
        """y = x W^T + b for x (..., I); returns y (..., O)."""
        return self._apply(self._input(x, copy=False))

    def forward_train(self, x):
        """As calling the layer, and also return the cache that ``backward`` needs.

        Returns
        -------
        y : array (..., O)
        cache : object
            Holds copies of ``x`` and ``weight``.
        """
        x = self._input(x, copy=True)
        bias = self._params.get("bias")
        cache = _LinearCache(x, self._params["weight"].copy(), bias is not None)
        return self._apply(x), cache

    def backward(self, cache, dy):
        """Gradients of one ``forward_train`` call.

        Parameters
        ----------
        cache : object
            From ``forward_train`` of a ``Linear`` of this shape.
        dy : array (..., O)
            Gradient of the loss with respect to ``y``.

        Returns
        -------
        dx : array (..., I)
        grads : dict
            ``weight`` (O, I) and ``bias`` (O,), keyed like ``state_dict()``.
        """
        if not isinstance(cache, _LinearCache):
            raise TypeError(f"cache must be the one returned by Linear.forward_train; "
                            f"got {type(cache).__name__}")
        W = cache.weight
        if W.shape != self._params["weight"].shape or cache.bias != ("bias" in self._params):
            raise ValueError(f"cache comes from a Linear({W.shape[1]}, {W.shape[0]}, "
                             f"bias={cache.bias}), not {self!r}")
        x = cache.x
        dy = as_float_array("dy", dy, self.dtype, x.shape[:-1] + (self.out_features,),
                            "(the shape of y)")
        x2, dy2 = x.reshape(-1, self.in_features), dy.reshape(-1, self.out_features)
        grads = {"weight": dy2.T @ x2}
        if cache.bias:
            grads["bias"] = dy2.sum(axis=0)
        dx = (dy2 @ W).reshape(x.shape)
        return dx, grads


class Embedding(_Parameterised):
    """A lookup table of vectors for integer tokens, as ``torch.nn.Embedding``.

    Parameters
    ----------
    num_embeddings : int
        V, the number of tokens (indices run from 0 to V - 1).
    embedding_dim : int
        E, the size of each vector.
    padding_idx : int or None
        A token whose vector starts at zero and never receives a gradient.
    dtype : float32 or float64, default float32
    seed : int or None
        Seed of the initialisation: standard normal, as PyTorch.

    Notes
    -----
    Parameter: ``weight`` (V, E). Indices of any shape (...) give vectors (..., E); token
    sequences (T, B) become the (T, B, E) input of an ``LSTM``. Indices have no gradient, so
    ``backward`` returns only the parameter gradient, a dense (V, E) array.

    Examples
    --------
    >>> import numpy as np, lstmx
    >>> emb = lstmx.Embedding(10, 4, seed=0)
    >>> e, cache = emb.forward_train(np.array([[1, 2], [3, 1]]))
    >>> e.shape, emb.backward(cache, np.ones_like(e))["weight"][1]
    ((2, 2, 4), array([2., 2., 2., 2.], dtype=float32))
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype=np.float32,
                 seed=None):
        self.num_embeddings = _check_int("num_embeddings", num_embeddings, 1)
        self.embedding_dim = _check_int("embedding_dim", embedding_dim, 1)
        if padding_idx is not None:
            padding_idx = _check_int("padding_idx", padding_idx, -self.num_embeddings)
            if padding_idx >= self.num_embeddings:
                raise ValueError(f"padding_idx must be in [-{self.num_embeddings}, "
                                 f"{self.num_embeddings}); got {padding_idx}")
            padding_idx %= self.num_embeddings
        self.padding_idx = padding_idx
        dtype = check_dtype(dtype)
        rng = np.random.default_rng(seed)
        weight = rng.standard_normal((self.num_embeddings, self.embedding_dim)).astype(dtype)
        if padding_idx is not None:
            weight[padding_idx] = 0
        self._params = {"weight": weight}

    def __repr__(self):
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return (f"Embedding({self.num_embeddings}, {self.embedding_dim}{pad}, "
                f"dtype={self.dtype.name})")

    @property
    def dtype(self) -> np.dtype:
        return self._params["weight"].dtype

    def _indices(self, indices):
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"indices must be an integer array; got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_embeddings):
            raise ValueError(f"indices must be in [0, {self.num_embeddings}) "
                             f"(num_embeddings); got values from {idx.min()} to {idx.max()}")
        return idx

    def __call__(self, indices):
        """The vectors of ``indices`` (...): an array (..., E)."""
        return self._params["weight"][self._indices(indices)]

    def forward_train(self, indices):
        """As calling the layer, and also return the cache that ``backward`` needs.

        Returns
        -------
        y : array (..., E)
        cache : object
            Holds a copy of the indices.
        """
        idx = self._indices(indices)
        cache = _EmbeddingCache(np.array(idx, dtype=np.intp), self._params["weight"].shape)
        return self._params["weight"][idx], cache

    def backward(self, cache, dy):
        """The gradient of ``weight`` from that of the looked-up vectors.

        Parameters
        ----------
        cache : object
            From ``forward_train`` of an ``Embedding`` of this shape.
        dy : array (..., E)
            Gradient of the loss with respect to the output.

        Returns
        -------
        grads : dict
            ``weight`` (V, E): each row sums the gradients of that token's occurrences
            (zero for ``padding_idx``).
        """
        if not isinstance(cache, _EmbeddingCache):
            raise TypeError(f"cache must be the one returned by Embedding.forward_train; "
                            f"got {type(cache).__name__}")
        V, E = self.num_embeddings, self.embedding_dim
        if cache.shape != (V, E):
            raise ValueError(f"cache comes from an Embedding{cache.shape}, not {self!r}")
        idx = cache.indices
        dy = as_float_array("dy", dy, self.dtype, idx.shape + (E,), "(the shape of y)")
        dW = np.zeros((V, E), self.dtype)
        np.add.at(dW, idx.ravel(), dy.reshape(-1, E))
        if self.padding_idx is not None:
            dW[self.padding_idx] = 0
        return {"weight": dW}
