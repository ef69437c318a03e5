"""The public layers: ``LSTM`` (stacked, bidirectional sequences) and ``LSTMCell`` (one step).

Both keep their parameters as NumPy arrays named and shaped like PyTorch's, check every input
in ``lstmx._validation`` and hand the work to the compiled kernels through ``lstmx._engine``.
"""
from __future__ import annotations

import numpy as np

from lstmx import _engine, _masks, _workspace
from lstmx._dispatch import kernels as _kernels
from lstmx._config import LSTMConfig
from lstmx._validation import (as_float_array, check_lengths, check_rows, check_state,
                               check_state_grad)

__all__ = ["LSTM", "LSTMCell"]


class _Parameterised:
    """Parameter storage shared by ``LSTM`` and ``LSTMCell``: live arrays keyed by name."""

    _params: dict

    def _stack_peepholes(self, suffixes) -> list:
        """Keep each layer's three peephole vectors as the rows of one (3, H) array, which the
        kernels take as it is (stacking them at every call would cost a small model more than
        the peepholes' arithmetic). The parameters stay separate, live, arrays (the rows).
        Returns the stacks in the order of ``suffixes``."""
        stacks = []
        for s in suffixes:
            stack = np.stack([self._params[f"weight_c{g}" + s] for g in "ifo"])
            for row, g in enumerate("ifo"):
                self._params[f"weight_c{g}" + s] = stack[row]
            stacks.append(stack)
        return stacks

    def _stack_layer_norms(self, cfg, suffixes) -> list:
        """As ``_stack_peepholes``, for the layer-norm parameters: per suffix, the pair
        ([gamma_ih; beta_ih; gamma_hh; beta_hh] (4, 4H), [gamma_c; beta_c] (2, H)) whose
        rows are the live parameters."""
        stacks = []
        for s in suffixes:
            names = [f"layer_norm_{part}_{kind}" + s for part in ("ih", "hh", "c")
                     for kind in ("weight", "bias")]
            pair = (np.stack([self._params[n] for n in names[:4]]),
                    np.stack([self._params[n] for n in names[4:]]))
            for row, name in enumerate(names):
                self._params[name] = pair[row // 4][row % 4]
            stacks.append(pair)
        return stacks

    def _masks(self, T, B, rng):
        """The masks of a training pass (drawn from ``rng``, see ``lstmx._masks``)."""
        return _masks.draw(self.config, T, B, rng)

    def parameters(self) -> dict[str, np.ndarray]:
        """The live parameter arrays, keyed like ``state_dict()``; update them in place."""
        return dict(self._params)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters, keyed exactly like PyTorch's ``state_dict()``."""
        return {name: value.copy() for name, value in self._params.items()}

    def load_state_dict(self, state_dict) -> None:
        """Copy parameters in from ``state_dict``.

        It must have exactly this layer's keys, with the same shapes; values are cast to the
        layer's dtype (PyTorch CPU tensors are accepted). Nothing changes if anything is wrong.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict must be a mapping; got {type(state_dict).__name__}")
        missing = [k for k in self._params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in self._params]
        if missing or unexpected:
            raise KeyError(f"state_dict keys do not match: missing {missing}, "
                           f"unexpected {unexpected}")
        self._realign()
        new = {}
        for name, live in self._params.items():
            value = state_dict[name]
            if hasattr(value, "detach"):  # a torch tensor
                value = value.detach().cpu().numpy()
            # A copy: a value may be a view of another live parameter that is written first.
            new[name] = as_float_array(f"state_dict[{name!r}]", value, live.dtype, live.shape,
                                       copy=True)
        for name, value in new.items():
            self._params[name][...] = value

    def __getattr__(self, name):
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # What the parameters' shapes follow: set once, by __init__.
    _FIXED = frozenset({"config", "_params", "_peeps", "_peep", "_lns", "in_features", "out_features",
                        "num_embeddings", "embedding_dim", "padding_idx"})

    def __setattr__(self, name, value):
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            # m.weight_ih_l0 = array: into the live parameter (an instance attribute would
            # shadow it, and the model would go on computing with, and saving, the old one).
            live = params[name]
            live[...] = as_float_array(name, value, live.dtype, live.shape, copy=True)
            return
        if name in self._FIXED and name in self.__dict__:
            raise AttributeError(f"{name} of a {type(self).__name__} cannot be reassigned: "
                                 "the parameters are shaped by it; make a new model")
        object.__setattr__(self, name, value)

    def __getstate__(self):
        # The peephole stacks are rebuilt from their rows by __setstate__.
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_peeps", "_peep", "_lns")}

    def __setstate__(self, state):
        # Arrays may arrive from anywhere (protocol-5 out-of-band buffers are read-only and
        # may sit at any address): each parameter gets a fresh aligned, writeable,
        # C-contiguous, native-order copy, and the peephole stacks are rebuilt on the rows.
        state = dict(state)
        state["_params"] = {name: np.array(value, dtype=value.dtype.newbyteorder("="),
                                           order="C", copy=True)
                            for name, value in state["_params"].items()}
        for derived in ("_peeps", "_peep", "_lns"):
            state.pop(derived, None)
            self.__dict__.pop(derived, None)
        self.__dict__.update(state)
        self._link()

    def _link(self):
        """Rebuild what is derived from the parameter arrays (the peephole and layer-norm
        stacks)."""

    def _changed_parameter(self):
        """A message naming a live parameter whose shape, dtype or layout was changed in
        place (``p.shape = ...``), or None."""
        shapes = self.config.parameter_shapes()
        if isinstance(self, LSTMCell):
            shapes = {k[:-3]: v for k, v in shapes.items()}
        for name, a in self._params.items():
            if not (a.dtype == self.config.dtype and a.shape == shapes[name]
                    and a.flags.c_contiguous and a.flags.aligned):
                return (f"parameter {name!r} was changed in place: it must be an aligned "
                        f"C-contiguous {self.config.dtype} array of shape {shapes[name]}; "
                        f"it is now {a.dtype} with shape {a.shape} (assign values to it "
                        f"instead: model.{name} = new_values)")
        return None

    def _explain(self, err, cache):
        """What to raise for ``err`` from the engine or kernels, whose own checks a call
        reaches only if something changed behind the validation: a live parameter reshaped
        or re-typed in place, or a cache changed by hand. (Their messages, "kernel
        argument ...", name internals a user cannot act on.)"""
        if not (isinstance(err, IndexError) or str(err).startswith("kernel argument")):
            return err
        problem = self._changed_parameter()
        if problem is not None:
            return ValueError(problem)
        if cache is not None:
            return ValueError("cache: its arrays were replaced or changed by hand after "
                              "forward_train and no longer fit its configuration; call "
                              "forward_train again")
        return RuntimeError(f"lstmx internal error (please report it): {err}")

    def _realign(self):
        """Replace any live parameter the kernels could not take as it is (misaligned,
        read-only, not C-contiguous, byte-swapped) by an aligned copy; the others stay the
        same objects."""
        bad = [name for name, a in self._params.items()
               if not (a.flags.c_contiguous and a.flags.aligned and a.flags.writeable
                       and a.dtype.isnative)]
        if bad:
            self.__setstate__(self.__getstate__())


def _sealed(y):
    """The read-only ``y`` that a cache shares, as an array whose read-only flag cannot be
    set back (its memory is reached through a read-only buffer): a write into it would
    change what ``backward`` reads."""
    return np.frombuffer(memoryview(y), y.dtype).reshape(y.shape)


class LSTM(_Parameterised):
    r"""A stacked, optionally bidirectional LSTM over sequences, computed by Cython kernels.

    For each layer and direction, at each time step t:

    .. math::

        z &= x_t W^T + h_{t-1} U^T + b_{ih} + b_{hh} = [z_i, z_f, z_g, z_o] \\
        i &= \sigma(z_i + p_i \odot c_{t-1}), \quad f = \sigma(z_f + p_f \odot c_{t-1}),
             \quad g = \tanh(z_g) \\
        c_t &= f \odot c_{t-1} + i \odot g \\
        o &= \sigma(z_o + p_o \odot c_t) \\
        h_t &= (o \odot \mathrm{act}(c_t))\, R^T \quad (R^T \text{ only when projecting})

    where the peephole terms :math:`p` are present only with ``peephole=True`` and ``act`` is
    tanh or the identity. Dimensions: T sequence length, B batch, I ``input_size``, H
    ``hidden_size``, P ``proj_size``, H_out = P or H, L ``num_layers``, D = 2 if bidirectional
    else 1.

    Parameters
    ----------
    input_size, hidden_size : int
        I and H.
    num_layers : int, default 1
        Stacked layers; layer k > 0 reads the (concatenated) outputs of layer k-1.
    bias : bool, default True
        Whether to use ``bias_ih_l{k}`` and ``bias_hh_l{k}``.
    batch_first : bool, default False
        Inputs and outputs are (B, T, .) instead of (T, B, .).
    bidirectional : bool, default False
        Add a reverse direction (parameters suffixed ``_reverse``).
    proj_size : int, default 0
        Project h to P < H features with ``weight_hr_l{k}`` (P, H) (LSTMP, as PyTorch).
    peephole : bool, default False
        Peephole connections ``weight_ci_l{k}``, ``weight_cf_l{k}``, ``weight_co_l{k}`` (H,).
    output_activation : {"tanh", "identity"}, default "tanh"
        ``act`` above; "identity" gives h = o * c.
    dtype : float32 or float64, default float32
        The dtype of parameters and computations; inputs of the other float dtype are cast.
    seed : int or None
        Seed of the initialisation, for reproducible parameters.
    init : {"pytorch", "keras"}, default "pytorch"
        "pytorch": every parameter uniform in (-1/sqrt(H), 1/sqrt(H)). "keras": Keras' LSTM
        defaults (Glorot-uniform input weights, orthogonal recurrent weights, zero biases with
        a forget-gate bias of 1, zero peepholes).
    reverse : bool, default False
        Run every layer backwards in time, as the reverse half of a bidirectional layer:
        each sequence from its last valid step (t = lengths[b] - 1) down to t = 0, writing
        y_t at time t; h_n, c_n are the state after step 0. Only with
        ``bidirectional=False``. ONNX's ``direction="reverse"``; PyTorch has no equivalent.
    dropout : float in [0, 1), default 0
        Training only: each element of every layer's output but the last's is zeroed with
        probability p and the rest scaled by 1/(1-p) (PyTorch's ``dropout``).
    recurrent_dropout : float in [0, 1), default 0
        Training only: h_{t-1} times one Bernoulli(1-p)/(1-p) mask per sequence and unit,
        the same at every step, before the recurrent product (Keras', variational).
    zoneout : float or pair (p_c, p_h), default 0
        Training: each unit of c_t (h_t) keeps its previous value with probability p_c
        (p_h), fresh masks every step; inference: the expectation,
        c_t = p_c c_{t-1} + (1-p_c) c~_t (and the same for h).
    layer_norm : bool, default False
        z = LN(x W^T) + LN(h U^T) + b_ih + b_hh (LN over each row's 4H) and
        h = o * act(LN(c_t)), with ``layer_norm_ih_weight{s}``, ``layer_norm_ih_bias{s}``,
        ``layer_norm_hh_weight{s}`` and ``layer_norm_hh_bias{s}`` (4H,), and
        ``layer_norm_c_weight{s}`` and ``layer_norm_c_bias{s}`` (H,): the gains (weights)
        initialised to 1, the biases to 0.
    cell_clip : float or None, default None
        Clip c_t to [-cell_clip, cell_clip] right after its update (TF1's ``cell_clip``).

    Notes
    -----
    Parameter shapes, with ``{s}`` = ``_l{k}`` or ``_l{k}_reverse``: ``weight_ih{s}`` (4H, I)
    for k = 0 and (4H, D*H_out) above, ``weight_hh{s}`` (4H, H_out), ``bias_ih{s}`` and
    ``bias_hh{s}`` (4H,), ``weight_hr{s}`` (P, H); gates stacked in the order i, f, g, o.
    The maths of the regularisation options, forward and backward, is in
    ``docs/equations.md``. Their training cache holds, per layer and direction, besides the
    plain T*B*5H: the zoneout masks (T*B*H, T*B*H_out) and c~_t (T*B*H), the recurrent
    dropout mask (B*H_out), with layer norm T*B*(9H+3) (the normalised products and cell
    and their statistics), and per dropout layer its mask and the dropped output
    (2*T*B*D*H_out each). Inference keeps nothing more than a step's scratch.

    Examples
    --------
    >>> import numpy as np
    >>> from lstmx import LSTM
    >>> lstm = LSTM(8, 16, num_layers=2, dropout=0.3, zoneout=0.1, layer_norm=True, seed=0)
    >>> x = np.zeros((5, 3, 8), np.float32)
    >>> y, (h, c), cache = lstm.forward_train(x, rng=0)
    >>> y.shape
    (5, 3, 16)
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 bidirectional=False, proj_size=0, peephole=False, output_activation="tanh",
                 dtype=np.float32, seed=None, init="pytorch", reverse=False, dropout=0.0,
                 recurrent_dropout=0.0, zoneout=0.0, layer_norm=False, cell_clip=None):
        self.config = LSTMConfig(input_size, hidden_size, num_layers, bias, batch_first,
                                 bidirectional, proj_size, peephole, output_activation, dtype,
                                 reverse, dropout, recurrent_dropout, zoneout, layer_norm,
                                 cell_clip)
        self._params = self.config.init_parameters(seed, init)
        self._link()

    def _link(self):
        cfg = self.config
        suffixes = [cfg.suffix(k, d) for k in range(cfg.num_layers)
                    for d in range(cfg.num_directions)]
        self._peeps = self._stack_peepholes(suffixes) if cfg.peephole else []
        self._lns = self._stack_layer_norms(cfg, suffixes) if cfg.layer_norm else []

    def __repr__(self):
        c = self.config
        opts = [f"{c.input_size}", f"{c.hidden_size}"]
        defaults = LSTMConfig(1, 2)
        for name in ("num_layers", "bias", "batch_first", "bidirectional", "proj_size",
                     "peephole", "output_activation", "reverse", "dropout",
                     "recurrent_dropout", "zoneout", "layer_norm", "cell_clip"):
            if getattr(c, name) != getattr(defaults, name):
                opts.append(f"{name}={getattr(c, name)!r}")
        return f"LSTM({', '.join(opts)}, dtype={c.dtype.name})"

    @property
    def dtype(self) -> np.dtype:
        return self.config.dtype

    def _inputs(self, x, state, lengths, training):
        cfg = self.config
        shape = ("B", "T", cfg.input_size) if cfg.batch_first else ("T", "B", cfg.input_size)
        meaning = "(batch, seq_len, input_size)" if cfg.batch_first else \
            "(seq_len, batch, input_size)"
        x = as_float_array("x", x, cfg.dtype, shape, meaning, copy=False)
        if cfg.batch_first:
            x = x.swapaxes(0, 1)
        T, B = x.shape[:2]
        check_rows("x", T * B)
        lengths = check_lengths(lengths, B, T)
        # Transposing copies; training keeps its own copy of x in the cache (so a change to
        # the caller's x cannot reach backward) and zeroes its padding (see _engine.forward).
        if cfg.batch_first or training:
            x = _workspace.copy(x)
        LD = cfg.num_layers * cfg.num_directions
        h0, c0 = check_state(state, cfg.dtype, LD, B, cfg.output_size, cfg.hidden_size,
                             copy=True)
        return x, h0, c0, lengths

    def _output(self, y):
        return y.swapaxes(0, 1) if self.config.batch_first else y

    # One unbatched sequence, (T, I), as torch.nn.LSTM takes it: run as a batch of one.

    @staticmethod
    def _is_unbatched(x) -> bool:
        ndim = getattr(x, "ndim", None)
        if ndim is None:
            try:
                ndim = np.ndim(x)
            except (ValueError, TypeError):  # ragged: the batched path's checks say why
                return False
        return ndim == 2

    def _batch_one(self, x, state):
        """x (T, I) and state ((L*D, H_out), (L*D, H)) with a batch axis of one added."""
        cfg = self.config
        x = as_float_array("x", x, cfg.dtype, ("T", cfg.input_size),
                           "(seq_len, input_size), one unbatched sequence")
        x = x[None] if cfg.batch_first else x[:, None]
        if state is not None:
            LD = cfg.num_layers * cfg.num_directions
            # layers=0: states without a layer axis, here (L*D, .) without a batch axis.
            h0, c0 = check_state(state, cfg.dtype, 0, LD, cfg.output_size, cfg.hidden_size,
                                 copy=False)
            state = (h0[:, None], c0[:, None])
        return x, state

    def _unbatch(self, y):
        return y[0] if self.config.batch_first else y[:, 0]

    def _batch_one_grads(self, cache, dy, dstate):
        """dy (T, F) and dstate of an unbatched sequence with a batch axis of one added."""
        cfg = self.config
        if not isinstance(cache, _engine.LSTMCache) or cache.batch != 1:
            raise ValueError(f"dy must be 3-D, the shape of y, for the cache of a batch of "
                             f"{getattr(cache, 'batch', None)}; got 2-D with shape "
                             f"{np.shape(dy)} (the shape of one unbatched sequence's y)")
        F = cfg.num_directions * cfg.output_size
        dy = as_float_array("dy", dy, cfg.dtype, (cache.seq_len, F), "(the shape of y)")
        dy = dy[None] if cfg.batch_first else dy[:, None]
        if dstate is not None:
            LD = cfg.num_layers * cfg.num_directions
            dh, dc = check_state_grad(dstate, cfg.dtype, 0, LD, cfg.output_size,
                                      cfg.hidden_size)
            dstate = (dh[:, None], dc[:, None])
        return dy, dstate

    def __call__(self, x, state=None, lengths=None):
        """Inference over a batch of sequences.

        Parameters
        ----------
        x : array, (T, B, I), or (B, T, I) with ``batch_first``
            Or (T, I), one unbatched sequence as ``torch.nn.LSTM`` takes it: the outputs and
            states then have no batch axis either (y (T, D*H_out), h_n (L*D, H_out), ...),
            and neither do ``state``, ``dy`` and ``dstate``.
        state : pair of arrays (h0 (L*D, B, H_out), c0 (L*D, B, H)), optional
            Initial state (index layer*D + direction); zeros if None.
        lengths : array of int, (B,), optional
            Valid steps of each sequence, in [1, T]; later steps output zeros and leave the
            state unchanged (PyTorch's packed sequences).

        Returns
        -------
        y : array, (T, B, D*H_out), or (B, T, D*H_out) with ``batch_first``
        (h_n, c_n) : arrays (L*D, B, H_out) and (L*D, B, H), the state after each sequence's
            last valid step
        """
        if self._is_unbatched(x):  # (T, I): y (T, D*H_out), states (L*D, .)
            y, (h_n, c_n) = self(*self._batch_one(x, state), lengths)
            return self._unbatch(y), (h_n[:, 0], c_n[:, 0])

        x, h0, c0, lengths = self._inputs(x, state, lengths, training=False)
        try:
            y, h_n, c_n, _ = _engine.forward(self.config, self._params, x, h0, c0, lengths, False,
                                             self._peeps, self._lns)
        except (TypeError, ValueError, IndexError) as err:
            raise self._explain(err, None) from None
        return self._output(y), (h_n, c_n)

    def quantize(self, mode):
        """An inference copy with int8 or bfloat16 products: ``lstmx.QuantizedLSTM``."""
        from lstmx.quantized import QuantizedLSTM
        return QuantizedLSTM.from_float(self, mode)

    def forward_train(self, x, state=None, lengths=None, rng=None):
        """As calling the layer, in training (dropout and zoneout draw their masks), and also
        return the cache that ``backward`` needs.

        Parameters
        ----------
        x, state, lengths : as ``__call__``
        rng : int, numpy.random.Generator or None
            Where the masks of dropout, recurrent dropout and zoneout are drawn from: the
            same seed gives the same masks (and the cache keeps them for ``backward``);
            None draws fresh ones. Unused without those options.

        Returns
        -------
        y, (h_n, c_n) : as ``__call__``; ``y`` is read-only (the cache shares it)
        cache : LSTMCache
        """
        if self._is_unbatched(x):
            y, (h_n, c_n), cache = self.forward_train(*self._batch_one(x, state), lengths,
                                                      rng)
            return self._unbatch(y), (h_n[:, 0], c_n[:, 0]), cache

        x, h0, c0, lengths = self._inputs(x, state, lengths, training=True)
        masks = self._masks(x.shape[0], x.shape[1], rng)
        try:
            y, h_n, c_n, cache = _engine.forward(self.config, self._params, x, h0, c0, lengths,
                                                 True, self._peeps, self._lns, masks)
        except (TypeError, ValueError, IndexError) as err:
            raise self._explain(err, None) from None
        return self._output(_sealed(y)), (h_n, c_n), cache

    def backward(self, cache, dy, dstate=None):
        """Backpropagation through time for one ``forward_train`` call.

        Parameters
        ----------
        cache : LSTMCache
            From ``forward_train`` of a layer with this configuration. Caches are independent:
            several can be back-propagated in any order, or concurrently.
        dy : array, the shape of ``y``
            Gradient of the loss with respect to ``y``.
        dstate : pair (dh_n, dc_n), optional
            Gradients with respect to h_n and c_n; None, or a None member, means zeros.

        Returns
        -------
        dx : array, the shape of ``x``
        (dh0, dc0) : gradients with respect to the initial state
        grads : dict of arrays keyed like ``state_dict()``
        """
        if self._is_unbatched(dy):  # the gradients of one unbatched sequence
            dx, (dh0, dc0), grads = self.backward(cache, *self._batch_one_grads(cache, dy,
                                                                                 dstate))
            return self._unbatch(dx), (dh0[:, 0], dc0[:, 0]), grads

        cfg = self.config
        if not isinstance(cache, _engine.LSTMCache):
            raise TypeError(f"cache must be the LSTMCache returned by forward_train; "
                            f"got {type(cache).__name__}")
        if cache.config != cfg:
            raise ValueError(f"cache comes from a layer configured as {cache.config}, "
                             f"not {cfg}")
        T, B = cache.seq_len, cache.batch
        F = cfg.num_directions * cfg.output_size
        shape = (B, T, F) if cfg.batch_first else (T, B, F)
        dy = as_float_array("dy", dy, cfg.dtype, shape, "(the shape of y)")
        if cfg.batch_first:
            dy = np.ascontiguousarray(dy.swapaxes(0, 1))
        LD = cfg.num_layers * cfg.num_directions
        dh, dc = check_state_grad(dstate, cfg.dtype, LD, B, cfg.output_size, cfg.hidden_size)
        try:
            dx, grads = _engine.backward(cache, dy, dh, dc)
        except (TypeError, ValueError, IndexError) as err:
            raise self._explain(err, cache) from None
        return self._output(dx), (dh, dc), grads


class LSTMCell(_Parameterised):
    r"""One LSTM time step, with ``torch.nn.LSTMCell`` parameter names.

    Computes the step of ``LSTM`` (without projection) for a batch:
    ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih``, ``bias_hh`` (4H,), and with
    ``peephole=True`` ``weight_ci``, ``weight_cf``, ``weight_co`` (H,).

    Parameters
    ----------
    input_size, hidden_size : int
    bias : bool, default True
    peephole : bool, default False
    output_activation : {"tanh", "identity"}, default "tanh"
    dtype : float32 or float64, default float32
    seed : int or None
    init : {"pytorch", "keras"}, default "pytorch"
    zoneout : float or pair (p_c, p_h), default 0
    layer_norm : bool, default False
        With ``layer_norm_ih_weight``, ``layer_norm_ih_bias``, ``layer_norm_hh_weight`` and
        ``layer_norm_hh_bias`` (4H,), ``layer_norm_c_weight`` and ``layer_norm_c_bias`` (H,).
    cell_clip : float or None, default None
        As for ``LSTM`` (a step has no sequence: the two dropouts are the layer's).

    Examples
    --------
    >>> import numpy as np
    >>> from lstmx import LSTMCell
    >>> cell = LSTMCell(4, 8, zoneout=0.1, layer_norm=True, seed=0)
    >>> (h, c), cache = cell.forward_train(np.ones((2, 4), np.float32), rng=0)
    >>> h.shape
    (2, 8)
    """

    def __init__(self, input_size, hidden_size, bias=True, peephole=False,
                 output_activation="tanh", dtype=np.float32, seed=None, init="pytorch",
                 zoneout=0.0, layer_norm=False, cell_clip=None):
        self.config = LSTMConfig(input_size, hidden_size, bias=bias, peephole=peephole,
                                 output_activation=output_activation, dtype=dtype,
                                 zoneout=zoneout, layer_norm=layer_norm, cell_clip=cell_clip)
        # The engine reads layer names (weight_ih_l0); the cell shows torch's cell names.
        self._params = {name[:-3]: value
                        for name, value in self.config.init_parameters(seed, init).items()}
        self._link()

    def _link(self):
        self._peep = (self._stack_peepholes([""])[0] if self.config.peephole
                      else None)  # (3, H) or None
        self._lns = self._stack_layer_norms(self.config, [""]) if self.config.layer_norm \
            else []

    def __repr__(self):
        c = self.config
        extra = "".join(f", {name}={getattr(c, name)!r}"
                        for name, default in (("zoneout", (0.0, 0.0)), ("layer_norm", False),
                                              ("cell_clip", None))
                        if getattr(c, name) != default)
        return (f"LSTMCell({c.input_size}, {c.hidden_size}, bias={c.bias}, "
                f"peephole={c.peephole}, output_activation={c.output_activation!r}"
                f"{extra}, dtype={c.dtype.name})")

    @property
    def dtype(self) -> np.dtype:
        return self.config.dtype

    def _layer_params(self):
        # What the engine reads by layer name (it takes the peepholes from _peep).
        p, n = self._params, self.config.names(0, 0)
        layer = {n.weight_ih: p["weight_ih"], n.weight_hh: p["weight_hh"]}
        if n.bias_ih:
            layer[n.bias_ih], layer[n.bias_hh] = p["bias_ih"], p["bias_hh"]
        for name in n.layer_norm or ():
            layer[name] = p[name[:-3]]
        return layer

    def _inputs(self, x, state, training):
        cfg = self.config
        x = as_float_array("x", x, cfg.dtype, ("B", cfg.input_size), "(batch, input_size)",
                           copy=training)
        B = x.shape[0]
        h, c = check_state(state, cfg.dtype, 0, B, cfg.hidden_size, cfg.hidden_size, copy=True,
                           names=("h", "c"))
        return x[None], h[None], c[None], None

    def __call__(self, x, state=None):
        """One step. x (B, I); state (h (B, H), c (B, H)) or None for zeros.
        Returns the new (h, c)."""
        cfg, p = self.config, self._params
        identity = cfg.output_activation == "identity"
        if cfg.regularised_inference:
            x, h, c, _ = self._inputs(x, state, training=False)
            try:
                _, h, c, _ = _engine.forward(cfg, self._layer_params(), x, h, c, None, False,
                                             (self._peep,), self._lns)
            except (TypeError, ValueError, IndexError) as err:
                raise self._explain(err, None) from None
            return h[0], c[0]
        # A cell step is latency-bound: arrays that are already right go straight to the
        # kernel, which checks them in C (cell_step); anything else is validated here.
        if state is not None:
            try:
                new = _kernels.cell_step(x, state, cfg.input_size, cfg.hidden_size,
                                         p["weight_ih"], p["weight_hh"], p.get("bias_ih"),
                                         p.get("bias_hh"), self._peep, identity)
            except (TypeError, ValueError, IndexError) as err:
                raise self._explain(err, None) from None
            if new is not None:
                return new
        x, h, c, _ = self._inputs(x, state, training=False)
        y = np.empty((1, x.shape[1], cfg.hidden_size), cfg.dtype)
        try:
            _kernels.forward(_kernels.LayerForward(
                x=x[0], W=p["weight_ih"], U=p["weight_hh"], b_ih=p.get("bias_ih"),
                b_hh=p.get("bias_hh"), peep=self._peep, h=h[0], c=c[0], y=y,
                identity=identity))
        except (TypeError, ValueError, IndexError) as err:
            raise self._explain(err, None) from None
        return y[0], c[0]

    def quantize(self, mode):
        """An inference copy with int8 or bfloat16 products: ``lstmx.QuantizedLSTMCell``."""
        from lstmx.quantized import QuantizedLSTMCell
        return QuantizedLSTMCell.from_float(self, mode)

    def forward_train(self, x, state=None, rng=None):
        """One step, also returning the cache for ``backward``: ((h, c), cache). ``rng``
        (int, numpy.random.Generator or None) draws the zoneout masks, as for
        ``LSTM.forward_train``."""
        x, h, c, lengths = self._inputs(x, state, training=True)
        masks = self._masks(1, x.shape[1], rng)
        try:
            _, h, c, cache = _engine.forward(self.config, self._layer_params(), x, h, c,
                                             lengths, True, (self._peep,), self._lns, masks)
        except (TypeError, ValueError, IndexError) as err:
            raise self._explain(err, None) from None
        return (h[0], c[0]), cache

    def backward(self, cache, dstate):
        """Gradients of one step from those of its output state.

        Parameters
        ----------
        cache : LSTMCache
            From ``forward_train`` of a cell with this configuration.
        dstate : pair (dh, dc) of arrays (B, H)
            Gradients with respect to the new h and c; a None member means zeros.

        Returns
        -------
        dx : array (B, I)
        (dh, dc) : gradients with respect to the previous h and c
        grads : dict keyed like ``state_dict()``
        """
        cfg = self.config
        if not isinstance(cache, _engine.LSTMCache):
            raise TypeError(f"cache must be the LSTMCache returned by forward_train; "
                            f"got {type(cache).__name__}")
        if cache.config != cfg:
            raise ValueError(f"cache comes from a cell configured as {cache.config}, "
                             f"not {cfg}")
        if dstate is None:
            raise TypeError("dstate must be a pair (dh, dc); got None")
        B, H = cache.batch, cfg.hidden_size
        dh, dc = check_state_grad(dstate, cfg.dtype, 0, B, H, H, names=("dh", "dc"))
        dy = dh[None]
        dh0, dc0 = np.zeros((1, B, H), cfg.dtype), dc[None]
        try:
            dx, grads = _engine.backward(cache, dy, dh0, dc0, keys=cfg.cell_names)
        except (TypeError, ValueError, IndexError) as err:
            raise self._explain(err, cache) from None
        return dx[0], (dh0[0], dc0[0]), grads
