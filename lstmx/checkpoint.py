"""Checkpoints of a whole training run in one ``.npz``, without pickle.

A checkpoint holds what the next training step depends on: the modules' parameters and
configurations (``LSTM``, ``LSTMCell``, ``Linear``, ``Embedding``, and the fitted state of the
``lstmx.sklearn`` estimators), the optimiser's buffers and step count, a learning-rate
schedule's position, the random generator's state, the step number and any numbers or arrays
of your own. Restored into the same objects, the run goes on bit for bit as if it had never
stopped::

    ckpt = lstmx.checkpoint
    for step in range(start, n_steps):
        ...                                                  # one training step
        if step % 100 == 99:
            ckpt.save("run.npz", modules={"lstm": lstm, "head": head}, optimizer=opt,
                      rng=rng, step=step + 1)

    # after a crash or a kill: the same objects, built as before, then
    start = ckpt.load("run.npz", modules={"lstm": lstm, "head": head}, optimizer=opt,
                      rng=rng)["step"]

The archive has one array per parameter or buffer and a JSON header ``__lstmx_checkpoint__``
saying where each belongs. Saving a path writes a temporary file and renames it, so a run
killed while saving leaves the previous checkpoint whole. Loading never unpickles and checks
everything before changing anything.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json

import numpy as np

from lstmx import _archive
from lstmx.layers import LSTM, LSTMCell
from lstmx.modules import Embedding, Linear
from lstmx.optim import _Optimiser, _Scheduler

__all__ = ["save", "load"]

HEADER = "__lstmx_checkpoint__"
FORMAT, VERSION = "lstmx-checkpoint", 1
_ARRAY = "__array__"  # {"__array__": key}: an array stored beside the header
_TUPLE = "__tuple__"  # {"__tuple__": [...]}: a tuple (JSON has only lists)
KIND = "lstmx checkpoint"  # what messages call the file


# -- nested values <-> JSON plus arrays ----------------------------------------------------

def _encode(value, key, arrays):
    """``value`` as JSON, its arrays moved into ``arrays`` under keys derived from ``key``."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf" and value.dtype.kind != "U":
            raise TypeError(f"{key}: cannot checkpoint an array of dtype {value.dtype} "
                            "(numbers, bools and strings only)")
        arrays[key] = value
        return {_ARRAY: key}
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"{key}: dict keys must be strings; got {list(value)!r}")
        if _ARRAY in value or _TUPLE in value:
            raise ValueError(f"{key}: the keys {_ARRAY!r} and {_TUPLE!r} are reserved")
        return {k: _encode(v, f"{key}/{k}", arrays) for k, v in value.items()}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, f"{key}/{i}", arrays) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{key}/{i}", arrays) for i, v in enumerate(value)]
    raise TypeError(f"{key}: cannot checkpoint a {type(value).__name__} (numbers, strings, "
                    "None, arrays, and lists, tuples and dicts of them)")


def _decode(value, arrays, name):
    if isinstance(value, dict):
        if _ARRAY in value:
            if value[_ARRAY] not in arrays:
                raise ValueError(f"{name} lacks the array {value[_ARRAY]!r} its header names")
            return arrays[value[_ARRAY]]
        if _TUPLE in value:
            return tuple(_decode(v, arrays, name) for v in value[_TUPLE])
        return {k: _decode(v, arrays, name) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays, name) for v in value]
    return value


# -- modules -----------------------------------------------------------------------------

def _module_config(module) -> dict:
    """The class and options that rebuild ``module`` (parameters aside)."""
    if isinstance(module, (LSTM, LSTMCell)):
        config = dataclasses.asdict(module.config)
        config["dtype"] = module.config.dtype.name
        if isinstance(module, LSTMCell):
            config = {k: config[k] for k in ("input_size", "hidden_size", "bias",
                                             "peephole", "output_activation", "dtype",
                                             "zoneout", "layer_norm", "cell_clip")}
    elif isinstance(module, Linear):
        config = dict(in_features=module.in_features, out_features=module.out_features,
                      bias="bias" in module._params, dtype=module.dtype.name)
    elif isinstance(module, Embedding):
        config = dict(num_embeddings=module.num_embeddings,
                      embedding_dim=module.embedding_dim, padding_idx=module.padding_idx,
                      dtype=module.dtype.name)
    else:
        raise TypeError(f"cannot checkpoint a {type(module).__name__}: modules must be "
                        "lstmx LSTM, LSTMCell, Linear or Embedding, or lstmx.sklearn "
                        "estimators")
    return {"class": type(module).__name__, "config": config}


_MODULES = {"LSTM": LSTM, "LSTMCell": LSTMCell, "Linear": Linear, "Embedding": Embedding}


def _estimator_classes():
    try:
        from lstmx.sklearn import LSTMClassifier, LSTMRegressor
    except ImportError:  # scikit-learn is optional
        return {}
    return {"LSTMRegressor": LSTMRegressor, "LSTMClassifier": LSTMClassifier}


def _module_state(module) -> dict:
    if type(module).__name__ in ("LSTMRegressor", "LSTMClassifier") and \
            type(module).__module__ == "lstmx.sklearn":
        return {"class": type(module).__name__, "estimator": module._checkpoint_state()}
    return {**_module_config(module), "state": module.state_dict()}


def _restore_module(name, record, into, file):
    """The module ``into`` (or a new one) with the state of ``record``; a closure that
    applies it, so that everything is checked before anything changes."""
    cls_name = record.get("class")
    estimators = _estimator_classes()
    if cls_name in estimators:
        cls = estimators[cls_name]
        if into is None:
            into = cls()
        elif type(into) is not cls:
            raise ValueError(f"{file}: module {name!r} is a {cls_name}; cannot load it into a "
                             f"{type(into).__name__}")
        apply = into._checkpoint_restore(record["estimator"], f"{file}: module {name!r}")
        return into, apply
    if cls_name not in _MODULES:
        raise ValueError(f"{file}: module {name!r} has an unknown class {cls_name!r}")
    cls, config = _MODULES[cls_name], record["config"]
    if cls_name in ("LSTM", "LSTMCell") and isinstance(config, dict):
        # Options recorded before LSTM had them take their defaults; JSON makes the
        # zoneout pair a list.
        later = dict(zoneout=(0.0, 0.0), layer_norm=False, cell_clip=None)
        if cls_name == "LSTM":
            later.update(reverse=False, dropout=0.0, recurrent_dropout=0.0)
        config = {**later, **config}
        if isinstance(config["zoneout"], list):
            config["zoneout"] = tuple(config["zoneout"])
    if into is None:
        try:
            into = cls(**config)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{file}: module {name!r} has an invalid {cls_name} "
                             f"configuration: {err}") from err
    elif _module_config(into) != {"class": cls_name, "config": config}:
        raise ValueError(f"{file}: module {name!r} was saved as {cls_name}({config}); it "
                         f"cannot be loaded into {into!r}")
    state = record["state"]
    live = into.state_dict()
    if not isinstance(state, dict) or set(state) != set(live) or any(
            np.shape(state[k]) != v.shape for k, v in live.items()):
        raise ValueError(f"{file}: the parameters of module {name!r} do not match its "
                         "configuration")
    return into, lambda: into.load_state_dict(state)


# -- random generators -----------------------------------------------------------------------

def _rng_state(rng):
    if isinstance(rng, np.random.Generator):
        return {"kind": "Generator", "state": rng.bit_generator.state}
    if isinstance(rng, np.random.RandomState):
        return {"kind": "RandomState", "state": rng.get_state(legacy=False)}
    raise TypeError(f"rng must be a numpy.random.Generator or RandomState; got "
                    f"{type(rng).__name__}")


def _restore_rng(record, into, file):
    kind, state = record.get("kind"), record.get("state")
    bit_generators = {"PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937"}
    if kind not in ("Generator", "RandomState") or not isinstance(state, dict) or \
            state.get("bit_generator") not in bit_generators:
        raise ValueError(f"{file}: the random generator's state is not one lstmx saved")
    if into is None:
        bitgen = getattr(np.random, state["bit_generator"])()
        into = np.random.Generator(bitgen) if kind == "Generator" else \
            np.random.RandomState(bitgen)
    if kind == "Generator" and isinstance(into, np.random.Generator):
        target = into.bit_generator
        if type(target).__name__ != state["bit_generator"]:
            raise ValueError(f"{file}: the saved generator uses {state['bit_generator']}; "
                             f"rng uses {type(target).__name__}")
        probe = type(target)()
        probe.state = state  # checks the state's fields before the real one changes
        return into, lambda: setattr(target, "state", state)
    if kind == "RandomState" and isinstance(into, np.random.RandomState):
        probe = np.random.RandomState()
        probe.set_state(state)
        return into, lambda: into.set_state(state)
    raise ValueError(f"{file}: the saved generator is a {kind}; rng is a "
                     f"{type(into).__name__}")


# -- the archive -----------------------------------------------------------------------------

def save(file, *, modules=None, optimizer=None, scheduler=None, rng=None, step=0,
         extra=None) -> None:
    """Write a checkpoint of a training run.

    Parameters
    ----------
    file : str, path or writable binary file
        Written exactly there (no ``.npz`` appended); a path through a temporary file and a
        rename, so that an interrupted save leaves the previous file whole.
    modules : dict of str -> module, optional
        ``LSTM``, ``LSTMCell``, ``Linear``, ``Embedding`` or a ``lstmx.sklearn`` estimator,
        by a name of your choice.
    optimizer : SGD or Adam, optional
    scheduler : StepLR, CosineAnnealingLR or ReduceLROnPlateau, optional
    rng : numpy.random.Generator or RandomState, optional
        The generator the run draws from (shuffling, dropout masks, ...).
    step : int, default 0
        Where the run is; ``load`` returns it.
    extra : dict, optional
        Anything else to keep: numbers, strings, None, arrays, and lists, tuples and dicts
        of them (a loss curve, the epoch, ...).
    """
    _archive.check_file(file, "write")
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)) or \
            step < 0:
        raise ValueError(f"step must be an integer >= 0; got {step!r}")
    modules = {} if modules is None else modules
    if not isinstance(modules, dict) or not all(isinstance(k, str) for k in modules):
        raise TypeError(f"modules must be a dict of name -> module; got "
                        f"{type(modules).__name__}")
    if optimizer is not None and not isinstance(optimizer, _Optimiser):
        raise TypeError(f"optimizer must be an lstmx.optim optimiser; got "
                        f"{type(optimizer).__name__}")
    if scheduler is not None and not isinstance(scheduler, _Scheduler):
        raise TypeError(f"scheduler must be an lstmx.optim schedule; got "
                        f"{type(scheduler).__name__}")
    arrays = {}
    header = {
        "format": FORMAT, "version": VERSION, "step": int(step),
        "modules": {name: _encode(_module_state(m), f"modules/{name}", arrays)
                    for name, m in modules.items()},
        "optimizer": (None if optimizer is None else
                      _encode(optimizer.state_dict(), "optimizer", arrays)),
        "scheduler": (None if scheduler is None else
                      _encode(scheduler.state_dict(), "scheduler", arrays)),
        "rng": None if rng is None else _encode(_rng_state(rng), "rng", arrays),
        "extra": _encode({} if extra is None else extra, "extra", arrays),
    }
    arrays[HEADER] = np.array(json.dumps(header))
    _archive.write(file, arrays)


def load(file, *, modules=None, optimizer=None, scheduler=None, rng=None) -> dict:
    """Restore a checkpoint written by ``save``.

    Parameters
    ----------
    file : str, path or readable binary file
    modules : dict of str -> module, optional
        The run's modules, built as when the checkpoint was saved: their parameters are
        overwritten. Modules of the checkpoint not named here are built anew.
    optimizer, scheduler : optional
        Optimiser and schedule of the run (over the same parameters, in the same order);
        their state is overwritten. Required if the checkpoint holds one and you want it.
    rng : numpy.random.Generator or RandomState, optional
        Its state is overwritten; without it, a new generator is returned.

    Returns
    -------
    dict
        ``step``; ``modules`` (the given ones and any built); ``rng`` (the given one, a new
        one, or None if none was saved); ``extra``.

    Raises
    ------
    ValueError
        If the file is not a checkpoint, is damaged, or does not match the objects given;
        the message names the file. Nothing is changed then.

    Notes
    -----
    Read as ``lstmx.load`` reads models: each member's ``.npy`` header is checked against
    the bytes the archive holds for it before its array is allocated, so a load's memory is
    bounded by the file's size (by 1032 times it for a compressed archive). Members must
    have distinct names and be stored or deflated; arrays of either byte order are read.
    """
    with contextlib.ExitStack() as stack:
        archive = _archive.open_archive(stack, file, KIND)
        name = archive.name
        # Every member, each bounded by its own bytes in the file (what the header names
        # is known only once the header is read, and a member that is not an array of
        # numbers or strings makes the file unreadable wherever it is).
        arrays = {key: archive.read(key, label=f"array {key!r}")
                  for key in archive.members if key != HEADER}
        meta = _archive.read_json(archive, HEADER, FORMAT, VERSION)
    meta = _decode(meta, arrays, name)
    modules = {} if modules is None else dict(modules)
    unknown = [k for k in modules if k not in meta["modules"]]
    if unknown:
        raise ValueError(f"{name} holds the modules {list(meta['modules'])}; it has none "
                         f"named {unknown}")

    # Check everything, then apply: a mismatch anywhere leaves every object as it was.
    applies, restored = [], {}
    try:
        for key, record in meta["modules"].items():
            restored[key], apply = _restore_module(key, record, modules.get(key), name)
            applies.append(apply)
        for what, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
            saved = meta[what]
            if obj is None:
                continue
            if saved is None:
                raise ValueError(f"{name} holds no {what}")
            snapshot = obj.state_dict()
            obj.load_state_dict(saved)  # checks; undone below until everything has passed
            obj.load_state_dict(snapshot)
            applies.append(lambda obj=obj, saved=saved: obj.load_state_dict(saved))
        rng_out = None
        if meta["rng"] is not None:
            rng_out, apply = _restore_rng(meta["rng"], rng, name)
            applies.append(apply)
        elif rng is not None:
            raise ValueError(f"{name} holds no random generator state")
    except (KeyError, TypeError) as err:
        raise ValueError(f"{name} does not match the objects given: {err}") from err
    for apply in applies:
        apply()
    return {"step": meta["step"], "modules": restored, "rng": rng_out,
            "extra": meta["extra"]}
