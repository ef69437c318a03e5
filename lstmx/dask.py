"""lstmx on Dask: inference over chunked dask arrays and data-parallel training steps.

A model is one module (``LSTM``, ``LSTMCell``) or a list of modules applied in order, such as
``[Embedding, LSTM, Linear]``. The batch is split along the dask array's batch chunks; each
chunk holds whole sequences, so every task runs the model on its shard independently and Dask
does the scheduling, the transfers and the retries::

    from dask.distributed import Client
    client = Client(n_workers=2, threads_per_worker=1)
    X = da.from_zarr("x.zarr")                        # (T, B, I), chunked along B
    y = lstmx.dask.predict([lstm, head], X)           # a dask array, chunked as X
    opt = lstmx.optim.Adam([lstm.parameters(), head.parameters()])
    loss = lstmx.dask.train_step([lstm, head], opt, X, Y, lstmx.losses.mse_loss)

The time axis is rechunked to one chunk: a recurrence is sequential in time, so shards cut
along time would form a chain of tasks with no parallelism between them, a bidirectional
layer would need every time chunk before its first reverse step, and each cut would add a task
and a state transfer. Shards along the batch are independent, which is what Dask parallelises.

With a ``distributed`` client (given, or the one Dask would use), the model is scattered to
every worker once per call (``broadcast=True``); its tasks refer to that copy, so the weights
cross the network once per worker, not once per task. Dask's active memory manager (its
ReduceReplicas policy, on by default) may drop the copies no task is waiting for yet; a
worker whose copy was dropped fetches the model from another when a task needs it there
(dask/dask#11148). Without a client, Dask's local scheduler
runs the tasks on a private copy of the model taken at the call. Either way ``predict`` uses
the weights as they were when it was called, whatever happens to the model afterwards.
"""
from __future__ import annotations

import copy
import operator
import uuid

import dask
import dask.array as da
import numpy as np

from lstmx.layers import LSTM, LSTMCell
from lstmx.modules import Embedding, Linear
from lstmx.optim import _Optimiser, clip_grad_norm

__all__ = ["predict", "gradients", "train_step"]

_MODULES = (LSTM, LSTMCell, Linear, Embedding)


class _Pipeline:
    """The modules of a model, shipped to the workers as one object (one scatter, one key)."""

    __slots__ = ("modules",)

    def __init__(self, modules):
        self.modules = modules

    def __getstate__(self):
        return self.modules

    def __setstate__(self, modules):
        self.modules = modules


def _modules(model):
    mods = list(model) if isinstance(model, (list, tuple)) else [model]
    if not mods:
        raise ValueError("model must be a module or a non-empty list of modules; got an "
                         "empty list")
    for i, m in enumerate(mods):
        if not isinstance(m, _MODULES):
            names = ", ".join(t.__name__ for t in _MODULES)
            raise TypeError(f"model[{i}] must be one of {names}; got {type(m).__name__}")
    if not any(isinstance(m, (LSTM, LSTMCell)) for m in mods):
        raise ValueError("model must contain an LSTM or an LSTMCell; got only "
                         f"{[type(m).__name__ for m in mods]}")
    return mods


def _recurrent(mods, state, lengths, return_state):
    """The one recurrent module that ``state``/``lengths``/``return_state`` refer to."""
    rec = [m for m in mods if isinstance(m, (LSTM, LSTMCell))]
    if (state is not None or return_state) and len(rec) != 1:
        raise ValueError(f"state and return_state need exactly one LSTM or LSTMCell in the "
                         f"model; got {len(rec)}")
    if lengths is not None and any(isinstance(m, LSTMCell) for m in rec):
        raise ValueError("lengths needs an LSTM; an LSTMCell loop runs every step")
    return rec[0]


def _axes(rec):
    """(time axis, batch axis) of the model's input: those of its first recurrent module."""
    return (1, 0) if isinstance(rec, LSTM) and rec.config.batch_first else (0, 1)


def _client(client):
    """The distributed client to use: ``client``, or the one Dask's compute would use."""
    if client is not None:
        return client
    try:
        from distributed import Client
    except ImportError:
        return None
    owner = getattr(dask.base.get_scheduler(), "__self__", None)
    return owner if isinstance(owner, Client) else None


def _ship(mods, client):
    """A graph reference to one frozen copy of the model, sent to each worker at most once."""
    if client is not None:
        # hash=False: hashing every weight would cost as much as sending it.
        return client.scatter(_Pipeline(mods), broadcast=True, hash=False)
    return dask.delayed(_Pipeline(copy.deepcopy(mods)), name=f"lstmx-model-{uuid.uuid4().hex}")


def _compute(client, timeout, obj):
    if client is None:
        return dask.compute(obj)[0]
    future = client.compute(obj)
    try:
        return future.result(timeout=timeout)
    except BaseException:
        future.cancel()
        raise


# --- What runs on a worker -------------------------------------------------------------------

def _cell_loop(cell, x, state, train):
    """An LSTMCell over the time steps of x (T, B, I); h of every step (T, B, H)."""
    hs, caches = [], []
    for t in range(x.shape[0]):
        if train:
            state, cache = cell.forward_train(x[t], state)
            caches.append(cache)
        else:
            state = cell(x[t], state)
        hs.append(state[0])
    return np.stack(hs), state, caches


def _cell_loop_backward(cell, caches, dy):
    """Backpropagation through time of ``_cell_loop``: dx (T, B, I) and the summed grads."""
    dxs, total = [None] * len(caches), None
    dh_next, dc_next = 0, None
    for t in range(len(caches) - 1, -1, -1):
        dxs[t], (dh_next, dc_next), grads = cell.backward(caches[t],
                                                          (dy[t] + dh_next, dc_next))
        total = grads if total is None else {k: total[k] + g for k, g in grads.items()}
    return np.stack(dxs), total


def _forward(mods, x, state, lengths, train):
    """The model on one shard: output, the recurrent module's final state, caches."""
    final, caches = None, []
    for m in mods:
        if isinstance(m, LSTM):
            if train:
                x, final, cache = m.forward_train(x, state, lengths)
            else:
                x, final = m(x, state, lengths)
                cache = None
        elif isinstance(m, LSTMCell):
            x, final, cache = _cell_loop(m, x, state, train)
        elif train:
            x, cache = m.forward_train(x)
        else:
            x, cache = m(x), None
        caches.append(cache)
    return x, final, caches


def _backward(mods, caches, dy):
    """Gradients of every module (a list of dicts, in model order) from that of the output."""
    grads = [None] * len(mods)
    for i in range(len(mods) - 1, -1, -1):
        m, cache = mods[i], caches[i]
        if isinstance(m, LSTM):
            dy, _, grads[i] = m.backward(cache, dy)
        elif isinstance(m, LSTMCell):
            dy, grads[i] = _cell_loop_backward(m, cache, dy)
        elif isinstance(m, Linear):
            dy, grads[i] = m.backward(cache, dy)
        else:
            grads[i] = m.backward(cache, dy)
    return grads


def _predict_block(pipe, x, h0, c0, lengths):
    state = None if h0 is None else (h0, c0)
    y, final, _ = _forward(pipe.modules, x, state, lengths, False)
    return (y,) + (tuple(final) if final is not None else (None, None))


def _grad_block(pipe, x, dy, h0, c0, lengths, weight):
    state = None if h0 is None else (h0, c0)
    _, _, caches = _forward(pipe.modules, x, state, lengths, True)
    grads = _backward(pipe.modules, caches, dy)
    return 0.0, _scaled(grads, weight)


def _loss_block(pipe, x, target, h0, c0, lengths, weight, loss):
    state = None if h0 is None else (h0, c0)
    out, _, caches = _forward(pipe.modules, x, state, lengths, True)
    value, dout = loss(out, target)
    grads = _backward(pipe.modules, caches, dout)
    return float(value) * weight, _scaled(grads, weight)


def _scaled(grads, weight):
    if weight == 1:
        return grads
    return [{k: g * g.dtype.type(weight) for k, g in d.items()} for d in grads]


def _sum(*parts):
    """One node of the reduction tree: (loss, grads) pairs added key by key."""
    loss = sum(p[0] for p in parts)
    grads = [{k: np.sum([p[1][i][k] for p in parts], axis=0) for k in d}
             for i, d in enumerate(parts[0][1])]
    return loss, grads


def _tree_sum(parts, split_every):
    level = 0
    while len(parts) > 1:
        parts = [dask.delayed(_sum, pure=True)(*parts[i:i + split_every],
                                               dask_key_name=f"lstmx-sum-{level}-{i}-"
                                                             f"{uuid.uuid4().hex}")
                 for i in range(0, len(parts), split_every)]
        level += 1
    return parts[0]


# --- Graph building --------------------------------------------------------------------------

def _as_dask(name, value, ndim=None):
    if value is None:
        return None
    arr = value if isinstance(value, da.Array) else da.asarray(value)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions; got shape {arr.shape}")
    return arr


def _batch_blocks(name, arr, axis, chunks, batch):
    """``arr`` cut into the batch chunks along ``axis``, whole along every other axis:
    a list with one Delayed per chunk (or of Nones when ``arr`` is None)."""
    if arr is None:
        return [None] * len(chunks)
    if arr.shape[axis] != batch:
        raise ValueError(f"{name} must have the batch size {batch} on axis {axis}; got shape "
                         f"{arr.shape}")
    arr = arr.rechunk({ax: (chunks if ax == axis else -1) for ax in range(arr.ndim)})
    return list(arr.to_delayed().reshape(-1))


def _shards(mods, rec, X, state, lengths, extra=()):
    """The batch shards of X, the state, lengths and each of ``extra`` (arrays whose batch axis
    is X's), and X's time and batch axes."""
    t_axis, b_axis = _axes(rec)
    X = _as_dask("X", X)
    min_ndim = 2 if isinstance(mods[0], Embedding) else 3
    if X.ndim < min_ndim:
        raise ValueError(f"X must be a batch of sequences with at least {min_ndim} dimensions; "
                         f"got shape {X.shape}")
    if any(np.isnan(c) for c in X.shape):
        raise ValueError("X must have known chunk sizes; call X.compute_chunk_sizes() first")
    B = X.shape[b_axis]
    if B == 0:
        raise ValueError("X must hold at least one sequence; got a batch of 0")
    chunks = X.chunks[b_axis]
    blocks = {"X": _batch_blocks("X", X, b_axis, chunks, B)}
    if state is not None:
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"state must be a pair (h0, c0); got {type(state).__name__}")
        s_axis = 1 if isinstance(rec, LSTM) else 0
        s_dims = 3 if isinstance(rec, LSTM) else 2
        for nm, s in zip(("h0", "c0"), state):
            blocks[nm] = _batch_blocks(f"state[{nm}]", _as_dask(f"state[{nm}]", s, s_dims),
                                       s_axis, chunks, B)
    else:
        blocks["h0"] = blocks["c0"] = [None] * len(chunks)
    blocks["lengths"] = _batch_blocks("lengths", _as_dask("lengths", lengths, 1), 0, chunks,
                                      B)
    for nm, arr in extra:
        blocks[nm] = _batch_blocks(nm, _as_dask(nm, arr), b_axis, chunks, B)
    return X, blocks, chunks, t_axis, b_axis


def predict(model, X, state=None, lengths=None, *, return_state=False, client=None):
    """The model's output over a dask array of sequences, as a dask array chunked like X.

    Parameters
    ----------
    model : LSTM, LSTMCell, or list of LSTM, LSTMCell, Linear, Embedding
        Modules applied in order (an ``Embedding`` first, then token indices ``X``). An
        ``LSTMCell`` is run over the time steps of its input, from ``state``.
    X : dask array (T, B, ...), or (B, T, ...) when the first LSTM is ``batch_first``
        Chunked along the batch axis; the other axes are rechunked to one chunk each.
    state : pair of arrays, optional
        The recurrent module's initial state, as it takes it: (h0 (L*D, B, H_out),
        c0 (L*D, B, H)) for an LSTM, (h (B, H), c (B, H)) for a cell. Needs exactly one
        recurrent module in the model.
    lengths : array of int (B,), optional
        Valid steps of each sequence, for every LSTM of the model.
    return_state : bool, default False
        Also return the recurrent module's final state, as dask arrays chunked along the batch.
    client : distributed.Client, optional
        The client to scatter the model with; by default the one Dask would compute with.

    Returns
    -------
    y : dask array, the output of the last module, chunked along the batch as X
    (h_n, c_n) : dask arrays, when ``return_state``

    Examples
    --------
    >>> import dask.array as da, lstmx, lstmx.dask
    >>> lstm = lstmx.LSTM(4, 8, seed=0)
    >>> X = da.zeros((5, 6, 4), chunks=(5, 3, 4), dtype="float32")
    >>> y = lstmx.dask.predict(lstm, X)
    >>> y.shape, y.chunks[1]
    ((5, 6, 8), (3, 3))
    """
    mods = _modules(model)
    rec = _recurrent(mods, state, lengths, return_state)
    X, blocks, chunks, t_axis, b_axis = _shards(mods, rec, X, state, lengths)
    T = X.shape[t_axis]
    # One sequence of one step gives the trailing shapes and dtypes of y and of the state.
    probe = np.zeros([1 if ax in (t_axis, b_axis) else n for ax, n in enumerate(X.shape)],
                     X.dtype)
    y1, final1, _ = _forward(mods, probe, None, None, False)

    pipe = _ship(mods, _client(client))
    task = dask.delayed(_predict_block, pure=True, nout=3)
    ys, hs, cs = [], [], []
    for i, b in enumerate(chunks):
        y, h, c = task(pipe, blocks["X"][i], blocks["h0"][i], blocks["c0"][i],
                       blocks["lengths"][i],
                       dask_key_name=f"lstmx-predict-{i}-{uuid.uuid4().hex}")
        shape = [T if ax == t_axis else b if ax == b_axis else n
                 for ax, n in enumerate(y1.shape)]
        ys.append(da.from_delayed(y, tuple(shape), dtype=y1.dtype))
        if return_state:
            s_axis = final1[0].ndim - 2
            for out, d, s in ((hs, h, final1[0]), (cs, c, final1[1])):
                sshape = s.shape[:s_axis] + (b,) + s.shape[s_axis + 1:]
                out.append(da.from_delayed(d, sshape, dtype=s.dtype))
    y = da.concatenate(ys, axis=b_axis)
    if not return_state:
        return y
    s_axis = final1[0].ndim - 2
    return y, (da.concatenate(hs, axis=s_axis), da.concatenate(cs, axis=s_axis))


def gradients(model, X, dY, state=None, lengths=None, *, client=None, timeout=None,
              split_every=4):
    """The parameter gradients of the whole batch, computed shard by shard on the workers.

    Each shard runs ``forward_train`` and ``backward`` of every module on its sequences; the
    shards' gradients are summed in a tree (``split_every`` at a time) and equal, to float
    rounding, those of ``backward`` over the whole batch in one process.

    Parameters
    ----------
    model, X, state, lengths, client
        As for ``predict``.
    dY : array, the shape of the model's output
        Gradient of the loss with respect to the output (batch axis as X's).
    timeout : float, optional
        Seconds to wait for a distributed computation before raising ``TimeoutError`` (and
        cancelling it); local schedulers ignore it.
    split_every : int, default 4
        Fan-in of the reduction tree.

    Returns
    -------
    grads : dict of arrays keyed like ``state_dict()`` for a single module, else a list of
        such dicts, one per module (what an optimiser over their ``parameters()`` takes)
    """
    mods = _modules(model)
    rec = _recurrent(mods, state, lengths, False)
    split_every = _fan_in(split_every)
    _, blocks, chunks, _, _ = _shards(mods, rec, X, state, lengths, extra=[("dY", dY)])
    client = _client(client)
    pipe = _ship(mods, client)
    task = dask.delayed(_grad_block, pure=True)
    parts = [task(pipe, blocks["X"][i], blocks["dY"][i], blocks["h0"][i], blocks["c0"][i],
                  blocks["lengths"][i], 1, dask_key_name=f"lstmx-grad-{i}-{uuid.uuid4().hex}")
             for i in range(len(chunks))]
    _, grads = _compute(client, timeout, _tree_sum(parts, split_every))
    return grads[0] if not isinstance(model, (list, tuple)) else grads


def train_step(model, optimizer, X, Y, loss, state=None, lengths=None, *, max_norm=None,
               client=None, timeout=None, split_every=4):
    """One data-parallel training step: shard gradients on the workers, one optimiser step here.

    Every shard computes ``loss(output, target)`` on its sequences and back-propagates it;
    the gradients are weighted by the shard's share of the batch (b_i / B) and summed in a
    tree. For a loss that is a mean over the same number of terms per sequence (``mse_loss``;
    ``cross_entropy`` without ``ignore_index``/``mask``) this is, to float rounding, the
    gradient of the loss of the whole batch. Then ``optimizer`` steps once, in this process;
    the next call ships the new weights to the workers. Nothing changes until every shard's
    gradient is in: if the computation fails (a worker lost more often than Dask retries, a
    timeout), the step raises and the model and optimiser are as before.

    Parameters
    ----------
    model, X, state, lengths, client, timeout, split_every
        As for ``gradients``.
    optimizer : lstmx.optim optimiser
        Built over the modules' ``parameters()``, one dict per module in model order.
    Y : array
        Targets, batch axis as X's; ``loss`` receives each shard's slice.
    loss : callable
        ``loss(output, target) -> (value, d_output)``, as ``lstmx.losses.mse_loss``.
    max_norm : float, optional
        Clip the summed gradients to this global norm before the step.

    Returns
    -------
    loss : float
        The loss of the whole batch (shard losses weighted as the gradients).
    """
    mods = _modules(model)
    rec = _recurrent(mods, state, lengths, False)
    split_every = _fan_in(split_every)
    _check_optimiser(optimizer, mods)
    if not callable(loss):
        raise TypeError(f"loss must be a callable loss(output, target) -> (value, d_output); "
                        f"got {type(loss).__name__}")
    X, blocks, chunks, _, b_axis = _shards(mods, rec, X, state, lengths, extra=[("Y", Y)])
    B = X.shape[b_axis]
    client = _client(client)
    pipe = _ship(mods, client)
    task = dask.delayed(_loss_block, pure=True)
    parts = [task(pipe, blocks["X"][i], blocks["Y"][i], blocks["h0"][i], blocks["c0"][i],
                  blocks["lengths"][i], b / B, loss,
                  dask_key_name=f"lstmx-step-{i}-{uuid.uuid4().hex}")
             for i, b in enumerate(chunks)]
    value, grads = _compute(client, timeout, _tree_sum(parts, split_every))
    if max_norm is not None:
        clip_grad_norm(grads, max_norm)
    optimizer.step(grads)
    return value


def _fan_in(split_every):
    if isinstance(split_every, (bool, np.bool_)):
        raise TypeError(f"split_every must be an integer; got {split_every!r}")
    try:
        split_every = operator.index(split_every)
    except TypeError as err:
        raise TypeError(f"split_every must be an integer; got "
                        f"{type(split_every).__name__}") from err
    if split_every < 2:
        raise ValueError(f"split_every must be >= 2; got {split_every}")
    return split_every


def _check_optimiser(optimizer, mods):
    """The optimiser must update these modules' live arrays, one dict per module, in order:
    checked before any work, so that a mismatch cannot surface after a step's computation."""
    if not isinstance(optimizer, _Optimiser):
        raise TypeError(f"optimizer must be an lstmx.optim optimiser; got "
                        f"{type(optimizer).__name__}")
    if len(optimizer.params) != len(mods):
        raise ValueError(f"optimizer must have one parameter dict per module: expected "
                         f"{len(mods)}, got {len(optimizer.params)}")
    for i, (group, m) in enumerate(zip(optimizer.params, mods)):
        live = m.parameters()
        if set(group) != set(live) or any(group[k] is not live[k] for k in live):
            raise ValueError(f"optimizer's parameter dict {i} is not the live parameters() of "
                             f"model module {i} ({type(m).__name__})")
