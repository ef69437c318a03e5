"""Optimisers that update live parameter arrays in place, and clipping by global norm.

Parameters are given as the dicts that ``parameters()`` returns, one per module, so that one
optimiser trains several modules together; ``step`` takes the gradient dicts that the modules'
``backward`` return, in the same order::

    opt = Adam([lstm.parameters(), head.parameters()], lr=1e-3)
    ...
    dx, _, g_lstm = lstm.backward(lstm_cache, dy)
    clip_grad_norm([g_lstm, g_head], max_norm=1.0)
    opt.step([g_lstm, g_head])

The updates are those of ``torch.optim.SGD`` and ``torch.optim.Adam`` with the same settings.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SGD", "Adam", "clip_grad_norm"]


def _as_list(name, dicts):
    """``dicts`` (a dict, or a list or tuple of dicts) as a list of dicts."""
    if hasattr(dicts, "keys"):
        return [dicts]
    if not isinstance(dicts, (list, tuple)) or not all(hasattr(d, "keys") for d in dicts):
        raise TypeError(f"{name} must be a dict of arrays or a list of such dicts; "
                        f"got {type(dicts).__name__}")
    return list(dicts)


def _check_hyper(name, value, low=0.0, high=None, low_open=False):
    if isinstance(value, (bool, np.bool_)) or not np.isscalar(value) or \
            not np.isreal(value):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    if too_low or (high is not None and value >= high) or not np.isfinite(value):
        bounds = (f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'})")
        raise ValueError(f"{name} must be in {bounds}; got {value}")
    return value


class _Optimiser:
    """Holds the parameter dicts and matches gradient dicts against them."""

    def __init__(self, params, lr):
        groups = _as_list("params", params)
        seen = set()
        for g, group in enumerate(groups):
            for key, p in group.items():
                where = f"params[{g}][{key!r}]"
                if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                    raise TypeError(f"{where} must be a float NumPy array; got "
                                    f"{type(p).__name__}")
                if not p.flags.writeable:
                    raise ValueError(f"{where} is read-only; the optimiser updates it in "
                                     "place, so pass the live arrays of parameters()")
                if id(p) in seen:
                    raise ValueError(f"{where} appears twice; it would be updated twice")
                seen.add(id(p))
        self.params = [dict(group) for group in groups]
        self.lr = lr
        self.steps = 0
        # One slot of optimiser state per parameter array, in the order of self.params.
        self.state = [{key: {} for key in group} for group in self.params]

    @property
    def lr(self) -> float:
        """The learning rate; assign to it to schedule it."""
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _check_hyper("lr", value)

    def _pairs(self, grads):
        """(param, grad, state) for every parameter, the grads checked and in its dtype."""
        grads = _as_list("grads", grads)
        if len(grads) != len(self.params):
            raise ValueError(f"grads must have one dict per parameter dict: expected "
                             f"{len(self.params)}, got {len(grads)}")
        pairs = []
        for g, (group, ggroup, sgroup) in enumerate(zip(self.params, grads, self.state)):
            if set(group) != set(ggroup):
                missing = [k for k in group if k not in ggroup]
                unexpected = [k for k in ggroup if k not in group]
                raise KeyError(f"grads[{g}] keys do not match params[{g}]: missing "
                               f"{missing}, unexpected {unexpected}")
            for key, p in group.items():
                grad = np.asarray(ggroup[key])
                if grad.shape != p.shape:
                    raise ValueError(f"grads[{g}][{key!r}] must have shape {p.shape}; "
                                     f"got {grad.shape}")
                if grad.dtype.kind != "f":
                    raise TypeError(f"grads[{g}][{key!r}] must be a float array; got dtype "
                                    f"{grad.dtype}")
                pairs.append((p, grad.astype(p.dtype, copy=False), sgroup[key]))
        return pairs

    def step(self, grads):
        """Update every parameter in place from its gradient.

        Parameters
        ----------
        grads : dict or list of dicts
            Gradients matching ``params``: the same number of dicts, the same keys and shapes.
            They are not modified.
        """
        pairs = self._pairs(grads)
        self.steps += 1
        for p, grad, state in pairs:
            self._update(p, grad, state)

    def _update(self, p, grad, state):
        raise NotImplementedError


class SGD(_Optimiser):
    r"""Stochastic gradient descent with optional momentum and L2 weight decay.

    With :math:`g` the gradient, as ``torch.optim.SGD`` (no dampening):

    .. math::

        g &\leftarrow g + \lambda p \\
        v &\leftarrow \mu v + g \quad (v = g \text{ at the first step}) \\
        p &\leftarrow p - \eta\, (g + \mu v \text{ if Nesterov else } v)

    Parameters
    ----------
    params : dict or list of dicts of arrays
        Live parameter arrays, e.g. ``[lstm.parameters(), head.parameters()]``.
    lr : float
        :math:`\eta`.
    momentum : float, default 0
        :math:`\mu` in [0, 1).
    weight_decay : float, default 0
        :math:`\lambda`.
    nesterov : bool, default False
        Nesterov momentum (needs momentum > 0).
    """

    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        self.momentum = _check_hyper("momentum", momentum, 0.0, 1.0)
        self.weight_decay = _check_hyper("weight_decay", weight_decay)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be a bool; got {type(nesterov).__name__}")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0; got momentum=0")
        self.nesterov = bool(nesterov)

    def _update(self, p, grad, state):
        d = grad + self.weight_decay * p if self.weight_decay else grad
        if self.momentum:
            v = state.get("momentum")
            if v is None:
                v = state["momentum"] = np.array(d, dtype=p.dtype, copy=True)
            else:
                v *= self.momentum
                v += d
            d = d + self.momentum * v if self.nesterov else v
        p -= self.lr * d


class Adam(_Optimiser):
    r"""Adam (Kingma & Ba 2015), with L2 or decoupled (AdamW) weight decay.

    With :math:`g` the gradient and :math:`t` the step count, as ``torch.optim.Adam``:

    .. math::

        g &\leftarrow g + \lambda p \quad \text{(L2), or} \quad
            p \leftarrow (1 - \eta\lambda)\, p \quad \text{(decoupled)} \\
        m &\leftarrow \beta_1 m + (1 - \beta_1)\, g, \qquad
        v \leftarrow \beta_2 v + (1 - \beta_2)\, g^2 \\
        p &\leftarrow p - \frac{\eta}{1 - \beta_1^t}\,
            \frac{m}{\sqrt{v / (1 - \beta_2^t)} + \epsilon}

    Parameters
    ----------
    params : dict or list of dicts of arrays
        Live parameter arrays, e.g. ``[lstm.parameters(), head.parameters()]``.
    lr : float, default 1e-3
        :math:`\eta`.
    betas : pair of floats, default (0.9, 0.999)
        :math:`\beta_1, \beta_2` in [0, 1).
    eps : float, default 1e-8
        :math:`\epsilon`.
    weight_decay : float, default 0
        :math:`\lambda`.
    decoupled_weight_decay : bool, default False
        Decay the parameters directly (AdamW, Loshchilov & Hutter 2019) instead of adding
        :math:`\lambda p` to the gradient.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False):
        super().__init__(params, lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of floats; got {betas!r}")
        self.betas = (_check_hyper("betas[0]", betas[0], 0.0, 1.0),
                      _check_hyper("betas[1]", betas[1], 0.0, 1.0))
        self.eps = _check_hyper("eps", eps)
        self.weight_decay = _check_hyper("weight_decay", weight_decay)
        if not isinstance(decoupled_weight_decay, (bool, np.bool_)):
            raise TypeError(f"decoupled_weight_decay must be a bool; got "
                            f"{type(decoupled_weight_decay).__name__}")
        self.decoupled_weight_decay = bool(decoupled_weight_decay)

    def _update(self, p, grad, state):
        b1, b2 = self.betas
        if self.weight_decay:
            if self.decoupled_weight_decay:
                p *= 1 - self.lr * self.weight_decay
            else:
                grad = grad + self.weight_decay * p
        if not state:
            state["m"], state["v"] = np.zeros_like(p), np.zeros_like(p)
        m, v = state["m"], state["v"]
        m *= b1
        m += (1 - b1) * grad
        v *= b2
        v += (1 - b2) * np.square(grad)
        t = self.steps
        denom = np.sqrt(v)
        denom /= np.sqrt(1 - b2 ** t)
        denom += self.eps
        p -= (self.lr / (1 - b1 ** t)) * (m / denom)


def clip_grad_norm(grads, max_norm):
    """Scale gradients in place so that their global 2-norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: the norm is taken over every array of every dict
    together, and when it exceeds ``max_norm`` all are multiplied by
    ``max_norm / (norm + 1e-6)``.

    Parameters
    ----------
    grads : dict or list of dicts of arrays
        Gradients from ``backward``; modified in place.
    max_norm : float
        Largest global norm allowed, > 0.

    Returns
    -------
    norm : float
        The global norm before clipping (inf or nan if a gradient is not finite).
    """
    max_norm = _check_hyper("max_norm", max_norm, low_open=True)
    arrays = []
    for g, group in enumerate(_as_list("grads", grads)):
        for key, a in group.items():
            if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
                raise TypeError(f"grads[{g}][{key!r}] must be a float NumPy array; got "
                                f"{type(a).__name__}")
            arrays.append(a)
    norm = float(np.sqrt(sum(np.sum(np.square(a, dtype=np.float64)) for a in arrays)))
    coef = max_norm / (norm + 1e-6)
    if coef < 1:
        for a in arrays:
            a *= coef
    return norm
