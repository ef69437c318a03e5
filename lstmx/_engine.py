"""Runs the one-layer kernels over layers and directions.

Inputs arrive here already checked (``lstmx._validation``): time-major, C-contiguous and in the
compute dtype. This module allocates outputs and caches and calls ``lstmx._kernels``.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np

from lstmx import _fork, _workspace
from lstmx._dispatch import kernels as _kernels
from lstmx._config import LSTMConfig

__all__ = ["LSTMCache", "forward", "backward"]


# Weights at least this large share one copy among caches while they are unchanged (a cell
# stepped through a long sequence would otherwise keep a copy of its weights per step);
# smaller ones are copied each time, which costs less than comparing them.
SHARE_BYTES = 1 << 16
_snapshots: dict = {}  # id(live array) -> (weakref to it, weakref to its read-only copy)
_snapshots_lock = threading.RLock()  # re-entrant: a collection inside may run drop()


def _new_lock():  # in a child made by fork (see lstmx._fork)
    global _snapshots_lock
    _snapshots_lock = threading.RLock()


_fork.at_fork_in_child(_new_lock)


def _same_bits(a, b) -> bool:
    """Whether C-contiguous arrays ``a`` and ``b`` (same dtype and shape) hold the same bytes
    (0.0 and -0.0 differ, a NaN equals itself)."""
    bits = np.dtype(f"u{a.dtype.itemsize}")
    a, b = a.reshape(-1).view(bits), b.reshape(-1).view(bits)
    # After an optimiser step nearly every element differs: the head decides in a microsecond.
    return bool(np.array_equal(a[:64], b[:64]) and np.array_equal(a, b))


class PackedWeight:
    """A read-only copy of W or U (4H, n) as backward reads it where it packs them
    (``_kernels.pack_for_backward``): strips of ``BACKWARD_PACK_COLS`` columns, each
    (4H, BACKWARD_PACK_COLS) and contiguous, the last zero-padded. A training cache keeps
    its weights this way there, instead of a plain copy and a packed one. The layout is the
    build's (every kernel variant's strips are as wide), so a copy never leaves the process
    packed: it pickles plain."""

    __slots__ = ("packed", "shape", "__weakref__")

    def __init__(self, packed, shape):
        self.packed, self.shape = packed, tuple(shape)

    @property
    def dtype(self):
        return self.packed.dtype

    def strips(self):
        """The packed copy as (strips, 4H, cols)."""
        rows, n = self.shape
        cols = _kernels.BACKWARD_PACK_COLS
        return self.packed.reshape(-(-n // cols), rows, cols)

    def plain(self) -> np.ndarray:
        """The weight as a C-contiguous (4H, n) array."""
        rows, n = self.shape
        return np.ascontiguousarray(self.strips().transpose(1, 0, 2).reshape(rows, -1)[:, :n])

    def same_bits(self, live) -> bool:
        """Whether ``live`` (4H, n), C-contiguous, holds the bytes this copy was packed
        from (see ``_same_bits``)."""
        return (live.shape == self.shape and live.dtype == self.dtype
                and _kernels.packed_equal(live, self.packed))

    def __reduce__(self):  # pickled plain: the layout is this build's
        return _unpickle_weight, (self.plain(),)


def _unpickle_weight(plain):
    plain.flags.writeable = False
    return plain


def _pack(live) -> PackedWeight:
    rows, n = live.shape
    out = _workspace.empty(_kernels.packed_for_backward_size(rows, n), live.dtype)
    _kernels.pack_for_backward(live if live.flags.c_contiguous else np.ascontiguousarray(live),
                               out)
    out.flags.writeable = False
    return PackedWeight(out, live.shape)


def snapshot(live, packed=False):
    """A C-contiguous copy of ``live`` (a ``PackedWeight`` when ``packed``): for large
    arrays, a read-only one shared by the caches, the one made last time if ``live`` has not
    changed since and a cache still holds it."""
    if live.nbytes < SHARE_BYTES:  # this cache's own (a cell step: ~1 us for both weights)
        return _pack(live) if packed else live.copy()
    key = (id(live), packed)
    entry = _snapshots.get(key)
    if entry is not None and entry[0]() is live:
        copy = entry[1]()
        if packed:
            if copy is not None and copy.same_bits(np.ascontiguousarray(live)):
                return copy
        elif copy is not None and copy.shape == live.shape and copy.dtype == live.dtype \
                and _same_bits(copy, np.ascontiguousarray(live)):
            return copy
    if packed:
        copy = _pack(live)
    else:
        copy = _workspace.copy(live)  # reused pages: no page faults at every optimiser step
        copy.flags.writeable = False

    def drop(_, key=key):
        with _snapshots_lock:
            entry = _snapshots.get(key)
            if entry is not None and (entry[0]() is None or entry[1]() is None):
                del _snapshots[key]

    with _snapshots_lock:
        _snapshots[key] = (weakref.ref(live, drop), weakref.ref(copy, drop))
    return copy


class LSTMCache:
    """What ``backward`` needs from one training forward pass.

    It holds its own copies of everything backward reads (the layer inputs, the weights,
    the initial state), and the forward pass computes with those copies: whatever
    happens to the caller's ``x`` or to the parameters afterwards (an optimiser step before
    ``backward``, a reused input buffer), ``backward`` returns the gradient of the forward
    pass as it ran. A copy cannot be fooled, as a fingerprint of the bytes can, and costs
    less than hashing them (see ``docs/performance.md``). The output ``y`` returned with the
    cache is read-only because the cache holds it.
    """

    __slots__ = ("config", "weights", "lengths", "h0", "c0", "inputs", "outputs", "gates",
                 "cells", "extras", "masks")

    def __init__(self, config, weights, lengths, h0, c0, masks=None):
        self.config = config
        self.weights = weights
        self.lengths = lengths
        self.h0, self.c0 = h0, c0
        self.inputs, self.outputs, self.gates, self.cells = [], [], [], []
        # Per layer and direction of a regularised layer (see _regularised_forward), what
        # its backward reads besides the gates and cells: copies of the layer-norm
        # parameters, its masks, c~_t and the layer norms' saved values, by keyword.
        self.extras = []
        self.masks = masks  # lstmx._masks.Masks or None

    def __getstate__(self):
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state):
        # Unpickled arrays may be misaligned or read-only views of a transport's buffers:
        # the kernels get aligned copies (the weights stay read-only: see ``snapshot``).
        def fresh(a, read_only=False):
            if not isinstance(a, np.ndarray):
                return a
            a = np.array(a, dtype=a.dtype.newbyteorder("="), order="C")
            a.flags.writeable = not read_only
            return a

        for name in self.__slots__:
            value = state.get(name)
            if name == "weights":
                value = [tuple(fresh(a, True) for a in w) for w in value]
            elif name == "extras":
                value = [{k: fresh(a) for k, a in e.items()} for e in value or []]
            elif name == "masks":
                value = None if value is None else type(value)(
                    *([fresh(a) for a in part] for part in value))
            elif isinstance(value, list):
                value = [fresh(a) for a in value]
            elif name in ("lengths", "h0", "c0"):
                value = fresh(value)
            setattr(self, name, value)
        if self.outputs:
            self.outputs[-1].flags.writeable = False  # the y that was returned

    @staticmethod
    def keep(W, U, R, peep, packed=False):
        """Copies of one layer's weights (None stays None), for the forward pass to compute
        with and for backward: see ``snapshot``. With ``packed``, W and U are kept only as
        backward reads them (``PackedWeight``), and the forward pass reads the live ones."""
        return (snapshot(W, packed), snapshot(U, packed), None if R is None else snapshot(R),
                None if peep is None else snapshot(peep))

    @property
    def seq_len(self) -> int:
        return self.outputs[-1].shape[0]

    @property
    def batch(self) -> int:
        return self.outputs[-1].shape[1]

    @property
    def nbytes(self) -> int:
        arrays = self.inputs + self.outputs + self.gates + self.cells
        arrays += [a for e in self.extras for a in e.values() if a is not None]
        arrays += [a for part in self.masks or () for a in part if a is not None]
        return sum(a.nbytes for a in arrays)

    def __repr__(self):
        return (f"<LSTMCache seq_len={self.seq_len} batch={self.batch} "
                f"{self.nbytes / 2**20:.1f} MiB>")


def layer_weights(cfg: LSTMConfig, params, layer: int, direction: int, peeps):
    """(W, U, b_ih, b_hh, R, peep) as the kernels take them: peep = [p_i; p_f; p_o] (3, H)
    from ``peeps`` (the stacked arrays the layers keep, indexed like the state: layer * D +
    direction); absent ones are None."""
    n = cfg.names(layer, direction)
    W, U = params[n.weight_ih], params[n.weight_hh]
    b_ih, b_hh = (params[n.bias_ih], params[n.bias_hh]) if cfg.bias else (None, None)
    R = params[n.weight_hr] if cfg.proj_size else None
    peep = peeps[layer * cfg.num_directions + direction] if cfg.peephole else None
    return W, U, b_ih, b_hh, R, peep


def _regularised_forward(cfg, training, kw, idx, lns, masks, cache):
    """The kernel call of a regularised layer and direction: ``kw`` has the plain call's
    arguments; adds the options' and, in training, allocates what backward reads (the
    memory of each option: ctil T*B*H with zoneout of c; lnx, lnh T*B*4H, lnc T*B*H and
    rstd T*B*3 with layer norm) and records it in ``cache.extras``."""
    ln_g, ln_c = lns[idx] if cfg.layer_norm else (None, None)
    kw.update(clip=cfg.cell_clip or 0.0)
    if not training:
        return _kernels.RegularisedForward(ln_g=ln_g, ln_c=ln_c, p_c=cfg.zoneout[0],
                                           p_h=cfg.zoneout[1], **kw)
    T, B, H = kw["gates"].shape[0], kw["gates"].shape[1], cfg.hidden_size
    if ln_g is not None:  # forward and backward both read the cache's copies
        ln_g, ln_c = ln_g.copy(), ln_c.copy()
    rd, zc, zh = ((masks.recurrent[idx], masks.zoneout_c[idx], masks.zoneout_h[idx])
                  if masks is not None else (None, None, None))
    dt = cfg.dtype
    extras = dict(ln_g=ln_g, ln_c=ln_c, rd=rd, zc=zc, zh=zh,
                  ctil=None if zc is None else _workspace.empty((T, B, H), dt))
    ln = ln_g is not None
    for name, width in (("lnx", 4 * H), ("lnh", 4 * H), ("lnc", H), ("rstd", 3)):
        extras[name] = _workspace.empty((T, B, width), dt) if ln else None
    cache.extras.append(extras)
    return _kernels.RegularisedForward(**extras, **kw)


def forward(cfg: LSTMConfig, params, x, h0, c0, lengths, training: bool, peeps, lns=(),
            masks=None):
    """Stacked LSTM over x (T, B, I). ``h0``, ``c0`` (L*D, B, .) are consumed: they receive
    h_n, c_n; ``lengths`` (B,) intp or None (all T); ``peeps`` the layer's stacked peepholes
    (see ``layer_weights``); with layer norm ``lns`` its stacked layer-norm parameters
    ((4, 4H), (2, H)) per layer and direction; ``masks`` (training) a
    ``lstmx._masks.Masks`` or None. Returns y (T, B, D*Hout), h_n, c_n and,
    when training, an ``LSTMCache``."""
    T, B = x.shape[:2]
    D, H, Hout = cfg.num_directions, cfg.hidden_size, cfg.output_size
    identity = cfg.output_activation == "identity"
    regularised = cfg.regularised if training else cfg.regularised_inference
    cache = LSTMCache(cfg, [], lengths, h0.copy(), c0.copy(), masks) if training else None
    if training and lengths is not None:
        # The cache's x (the layers' own copy when training: see LSTM._inputs) meets dz in
        # dW = dz.T @ x: padding must be zeros, or a NaN there would give 0 * NaN = NaN.
        # Padded steps' outputs are discarded anyway.
        x[np.arange(T)[:, None] >= lengths] = 0
    h_n, c_n = h0, c0
    layer_input = x
    for k in range(cfg.num_layers):
        y = _workspace.empty((T, B, D * Hout), cfg.dtype)
        x2 = layer_input.reshape(T * B, -1)
        calls = []
        for d in range(D):
            idx = k * D + d
            W, U, b_ih, b_hh, R, peep = layer_weights(cfg, params, k, d, peeps)
            if training:  # forward and backward both read the cache's copies
                # or, where backward reads W and U packed, forward reads the live W and U
                # (they hold the copies' bits while it runs) and the cache keeps them packed:
                # one copy instead of two at backward. Small ones stay plain: a copy costs
                # less than a packing, and backward's team packs them.
                packed = (W.nbytes + U.nbytes >= SHARE_BYTES
                          and _kernels.backward_packs(T, B, H, cfg.proj_size, regularised))
                kept = cache.keep(W, U, R, peep, packed)
                W, U = (W, U) if packed else kept[:2]
                R, peep = kept[2:]
            gates = _workspace.empty((T, B, 4 * H), cfg.dtype) if training else None
            cells = _workspace.empty((T, B, H), cfg.dtype) if training else None
            if regularised:
                kw = dict(x=x2, W=W, U=U, b_ih=b_ih, b_hh=b_hh, R=R, peep=peep,
                          lengths=lengths, h=h_n[idx], c=c_n[idx], y=y, y_col=d * Hout,
                          reverse=cfg.is_reversed(d), identity=identity, gates=gates,
                          cells=cells)
                calls.append(_regularised_forward(cfg, training, kw, idx, lns, masks, cache))
            else:  # (keywords spelled out: a small model's step is microseconds)
                calls.append(_kernels.LayerForward(
                    x=x2, W=W, U=U, b_ih=b_ih, b_hh=b_hh, R=R, peep=peep, lengths=lengths,
                    h=h_n[idx], c=c_n[idx], y=y, y_col=d * Hout,
                    reverse=cfg.is_reversed(d), identity=identity, gates=gates, cells=cells))
            if training:
                cache.weights.append(kept)
                cache.gates.append(gates)
                cache.cells.append(cells)
        if regularised and D == 2:
            _kernels.forward_regularised_pair(*calls)
        elif regularised:
            _kernels.forward_regularised(calls[0])
        elif D == 2:
            _kernels.forward_pair(*calls)
        else:
            _kernels.forward(calls[0])
        if training:
            cache.inputs.append(x2)
            cache.outputs.append(y)
        layer_input = y
        if masks is not None and k < cfg.num_layers - 1 and masks.dropout[k] is not None:
            # Dropout between layers: the next layer (and its backward) reads y * mask.
            layer_input = _workspace.empty(y.shape, cfg.dtype)
            _kernels.scale(y, masks.dropout[k], layer_input)
    if training:
        layer_input.flags.writeable = False
    return layer_input, h_n, c_n, cache


def backward(cache: LSTMCache, dy, dh, dc, keys=None):
    """Gradients of a training forward pass. ``dy`` (T, B, D*Hout); ``dh``, ``dc``
    (L*D, B, .) are consumed: they receive dh0, dc0. Returns dx (T, B, I) and the parameter
    gradients in ``parameter_names`` order, keyed by ``keys`` (default: those names)."""
    cfg = cache.config
    T, B = cache.seq_len, cache.batch
    D, H, Hout = cfg.num_directions, cfg.hidden_size, cfg.output_size
    identity = cfg.output_activation == "identity"
    grads = {}
    d_out = dy
    for k in reversed(range(cfg.num_layers)):
        x2 = cache.inputs[k]
        dx = _workspace.zeros(x2.shape, x2.dtype)
        calls = []
        for d in range(D):
            idx = k * D + d
            W, U, R, peep = cache.weights[idx]
            Wp = Up = None
            if isinstance(W, PackedWeight):
                if _kernels.backward_packs(T, B, H, cfg.proj_size, cfg.regularised):
                    Wp, Up = W.packed, U.packed
                W, U = (None, None) if Wp is not None else (W.plain(), U.plain())
            dW = _workspace.empty((4 * H, x2.shape[1]), cfg.dtype)
            dU = _workspace.empty((4 * H, Hout), cfg.dtype)
            dR = None if R is None else np.empty_like(R)
            dpeep = None if peep is None else np.empty((3, H), cfg.dtype)
            db = np.empty(4 * H, cfg.dtype) if cfg.bias else None
            n = cfg.names(k, d)
            if cfg.regularised:
                dln_g = np.empty((4, 4 * H), cfg.dtype) if cfg.layer_norm else None
                dln_c = np.empty((2, H), cfg.dtype) if cfg.layer_norm else None
                calls.append(_kernels.RegularisedBackward(
                    x=x2, W=W, U=U, R=R, peep=peep, lengths=cache.lengths, h0=cache.h0[idx],
                    c0=cache.c0[idx], y=cache.outputs[k], y_col=d * Hout,
                    gates=cache.gates[idx], cells=cache.cells[idx], dy=d_out,
                    dy_col=d * Hout, dh=dh[idx], dc=dc[idx], dx=dx, dW=dW, dU=dU, db=db,
                    dR=dR, dpeep=dpeep, reverse=cfg.is_reversed(d), identity=identity,
                    clip=cfg.cell_clip or 0.0, dln_g=dln_g, dln_c=dln_c, Wp=Wp, Up=Up,
                    **cache.extras[idx]))
                if cfg.layer_norm:
                    g = n.layer_norm
                    grads[g[0]], grads[g[1]], grads[g[2]], grads[g[3]] = dln_g
                    grads[g[4]], grads[g[5]] = dln_c
            else:
                calls.append(_kernels.LayerBackward(
                    x=x2, W=W, U=U, R=R, peep=peep, lengths=cache.lengths, h0=cache.h0[idx],
                    c0=cache.c0[idx], y=cache.outputs[k], y_col=d * Hout,
                    gates=cache.gates[idx], cells=cache.cells[idx], dy=d_out,
                    dy_col=d * Hout, dh=dh[idx], dc=dc[idx], dx=dx, dW=dW, dU=dU, db=db,
                    dR=dR, dpeep=dpeep, reverse=cfg.is_reversed(d), identity=identity,
                    Wp=Wp, Up=Up))
            grads[n.weight_ih], grads[n.weight_hh] = dW, dU
            if cfg.bias:
                grads[n.bias_ih] = db  # bias_hh: a copy, once db is computed
            if cfg.proj_size:
                grads[n.weight_hr] = dR
            if cfg.peephole:  # (indexing makes the row views in half the time iterating does)
                ci, cf, co = n.peepholes
                grads[ci], grads[cf], grads[co] = dpeep[0], dpeep[1], dpeep[2]
        if cfg.regularised and D == 2:
            _kernels.backward_regularised_pair(*calls)
        elif cfg.regularised:
            _kernels.backward_regularised(calls[0])
        elif D == 2:
            _kernels.backward_pair(*calls)
        else:
            _kernels.backward(calls[0])
        for d in range(D if cfg.bias else 0):
            n = cfg.names(k, d)
            grads[n.bias_hh] = grads[n.bias_ih].copy()
        masks = cache.masks
        if k > 0 and masks is not None and masks.dropout[k - 1] is not None:
            # The gradient of y * mask (dropout between layers k-1 and k).
            _kernels.scale(dx, masks.dropout[k - 1].reshape(dx.shape), dx)
        d_out = dx.reshape(T, B, -1)
    names = cfg.parameter_names
    return d_out, {key: grads[name] for key, name in zip(keys or names, names)}
