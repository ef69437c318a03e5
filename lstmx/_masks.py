"""The random masks of a training pass (dropout, recurrent dropout, zoneout), drawn from rng.

One function says which masks a configuration needs, their shapes and what their values
mean; the layers draw them at ``forward_train`` and keep them in the cache, and the tests pass
masks of their own to the reference. The maths is in ``docs/equations.md`` ("Regularisation
and layer normalisation").
"""
from __future__ import annotations

import typing

import numpy as np

from lstmx import _random

__all__ = ["Masks", "check_rng", "as_generator", "draw"]


class Masks(typing.NamedTuple):
    """The masks of one training pass; None where the options need none.

    dropout : list, per layer k < L-1, of (T, B, D*H_out) arrays of 0 or 1/(1-p): the scale of
        each element of the layer's output on its way to layer k+1 (inverted dropout).
    recurrent : list, per layer*D + direction, of (B, H_out) arrays of 0 or 1/(1-p): the scale
        of h_{t-1} before the recurrent product, the same at every step.
    zoneout_c, zoneout_h : lists, per layer*D + direction, of (T, B, H) and (T, B, H_out)
        arrays of 0 or 1: 1 where the unit keeps its previous value at step t.
    """

    dropout: list
    recurrent: list
    zoneout_c: list
    zoneout_h: list


def check_rng(rng):
    """``rng`` if it is None, a non-negative int or a Generator, else a TypeError or
    ValueError. (Checked at every training call; a Generator is made only when masks are
    drawn: seeding one from the OS costs more than a small model's step.)"""
    if rng is None or isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (bool, np.bool_)) or not isinstance(rng, (int, np.integer)):
        raise TypeError(f"rng must be None, a non-negative int or a numpy.random.Generator; "
                        f"got {type(rng).__name__} {rng!r}")
    if rng < 0:
        raise ValueError(f"rng must be None, a non-negative int or a numpy.random.Generator; "
                         f"got {rng}")
    return int(rng)


def as_generator(rng) -> np.random.Generator:
    """``rng`` as a Generator: an int seeds a new one, None draws fresh entropy."""
    return np.random.default_rng(check_rng(rng))


def _bernoulli(rng, shape, p, value, below, dtype):
    """``value`` where u < p (``below``; else where u >= p), 0 elsewhere, u uniform in
    [0, 1): a Philox stream keyed by two 64-bit draws from ``rng``, filled by the OpenMP
    threads (``lstmx._random``; NumPy's own generators fill on one thread, and the masks of
    zoneout cost more than the rest of its step)."""
    key = rng.integers(0, 2**64, size=2, dtype=np.uint64)
    out = np.empty(shape, dtype)
    _random.bernoulli(out.reshape(-1), int(key[0]), int(key[1]), p, value, below)
    return out


def _scaled(rng, shape, p, dtype):
    """Bernoulli(1 - p) elements scaled by 1/(1-p), or None when p = 0."""
    if p == 0:
        return None
    return _bernoulli(rng, shape, p, 1.0 / (1.0 - p), False, dtype)


def _kept(rng, shape, p, dtype):
    """Bernoulli(p) elements (1: keep the previous value), or None when p = 0."""
    if p == 0:
        return None
    return _bernoulli(rng, shape, p, 1.0, True, dtype)


def draw(cfg, T: int, B: int, rng) -> Masks | None:
    """The masks of a training pass of ``cfg`` over T steps of a batch of B, drawn from
    ``rng`` (see ``as_generator``) in a fixed order; None when the options need none."""
    if not cfg.draws_masks:
        if rng is not None:
            check_rng(rng)
        return None
    L, D, H, Hout = cfg.num_layers, cfg.num_directions, cfg.hidden_size, cfg.output_size
    p_c, p_h = cfg.zoneout
    rng = as_generator(rng)
    masks = Masks([], [], [], [])
    for k in range(L):
        for _ in range(D):
            masks.recurrent.append(_scaled(rng, (B, Hout), cfg.recurrent_dropout, cfg.dtype))
            masks.zoneout_c.append(_kept(rng, (T, B, H), p_c, cfg.dtype))
            masks.zoneout_h.append(_kept(rng, (T, B, Hout), p_h, cfg.dtype))
        if k < L - 1:
            masks.dropout.append(_scaled(rng, (T, B, D * Hout), cfg.dropout, cfg.dtype))
    return masks
