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
Learning-rate schedules (``StepLR``, ``CosineAnnealingLR``, ``ReduceLROnPlateau``) set
``opt.lr`` as their ``torch.optim.lr_scheduler`` namesakes do. Optimisers and schedules have
``state_dict()`` / ``load_state_dict()`` (arrays and plain numbers only), which
``lstmx.checkpoint`` saves with the model.
"""
from __future__ import annotations

import math

import numpy as np

from lstmx._config import _check_int

__all__ = ["SGD", "Adam", "clip_grad_norm", "StepLR", "CosineAnnealingLR", "ReduceLROnPlateau"]


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

    _HYPER: tuple = ()  # the settings a state dict records besides lr

    def state_dict(self) -> dict:
        """Everything the next ``step`` depends on, besides the parameters, as copies.

        Returns
        -------
        dict
            ``type`` (the class name), ``lr``, ``steps``, the settings (``momentum``,
            ``betas``, ...) and ``state``: one dict per parameter dict, holding per
            parameter its buffers (``momentum``; ``m`` and ``v``) as arrays, empty before
            the first step.
        """
        state = [{key: {name: buf.copy() for name, buf in slot.items()}
                  for key, slot in group.items()} for group in self.state]
        hyper = {name: getattr(self, name) for name in self._HYPER}
        return {"type": type(self).__name__, "lr": self.lr, "steps": self.steps,
                **hyper, "state": state}

    def load_state_dict(self, state_dict) -> None:
        """Restore what ``state_dict()`` returned, for the same parameters.

        The settings, learning rate, step count and buffers are replaced; the buffers must
        match the parameters' keys and shapes. Nothing changes if anything is wrong.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict must be a mapping; got {type(state_dict).__name__}")
        if state_dict.get("type") != type(self).__name__:
            raise ValueError(f"state_dict is of a {state_dict.get('type')!r} optimiser, not "
                             f"{type(self).__name__!r}")
        expected = {"type", "lr", "steps", "state", *self._HYPER}
        if set(state_dict) != expected:
            raise KeyError(f"state_dict keys do not match: missing "
                           f"{sorted(expected - set(state_dict))}, unexpected "
                           f"{sorted(set(state_dict) - expected)}")
        steps = state_dict["steps"]
        if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, (int, np.integer)) \
                or steps < 0:
            raise ValueError(f"state_dict['steps'] must be an integer >= 0; got {steps!r}")
        groups = state_dict["state"]
        if not isinstance(groups, (list, tuple)) or len(groups) != len(self.params):
            raise ValueError(f"state_dict['state'] must have one dict per parameter dict: "
                             f"expected {len(self.params)}, got "
                             f"{len(groups) if isinstance(groups, (list, tuple)) else groups!r}")
        new_state = []
        for g, (group, sgroup) in enumerate(zip(self.params, groups)):
            if not hasattr(sgroup, "keys") or set(sgroup) != set(group):
                raise KeyError(f"state_dict['state'][{g}] must have the keys of params[{g}] "
                               f"{sorted(group)}; got "
                               f"{sorted(sgroup) if hasattr(sgroup, 'keys') else sgroup!r}")
            new_group = {}
            for key, p in group.items():
                slot = sgroup[key]
                where = f"state_dict['state'][{g}][{key!r}]"
                if not hasattr(slot, "keys") or not set(slot) <= set(self._BUFFERS):
                    raise ValueError(f"{where} must be a dict of some of the buffers "
                                     f"{list(self._BUFFERS)}; got {slot!r}")
                new_slot = {}
                for name, buf in slot.items():
                    buf = np.asarray(buf)
                    if buf.shape != p.shape or buf.dtype.kind != "f":
                        raise ValueError(f"{where}[{name!r}] must be a float array of shape "
                                         f"{p.shape}; got {buf.dtype} {buf.shape}")
                    new_slot[name] = np.array(buf, dtype=p.dtype, copy=True)
                new_group[key] = new_slot
            new_state.append(new_group)
        # Settings through a fresh instance's checks, so that a bad value changes nothing.
        probe = type(self)(self.params, lr=state_dict["lr"],
                           **{name: state_dict[name] for name in self._HYPER})
        for name in ("lr", *self._HYPER):
            setattr(self, name, getattr(probe, name))
        self.steps = int(steps)
        self.state = new_state


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

    _HYPER = ("momentum", "weight_decay", "nesterov")
    _BUFFERS = ("momentum",)

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

    _HYPER = ("betas", "eps", "weight_decay", "decoupled_weight_decay")
    _BUFFERS = ("m", "v")

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


class _Scheduler:
    """Sets ``optimizer.lr`` each ``step``; ``last_epoch`` counts the steps taken."""

    _FIELDS: tuple = ()  # what a state dict records besides last_epoch and base_lr

    def __init__(self, optimizer):
        if not isinstance(optimizer, _Optimiser):
            raise TypeError(f"optimizer must be an lstmx.optim optimiser; got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0

    def state_dict(self) -> dict:
        """The schedule's settings and position: plain numbers, no reference to the optimiser."""
        return {"type": type(self).__name__, "base_lr": self.base_lr,
                "last_epoch": self.last_epoch,
                **{name: getattr(self, name) for name in self._FIELDS + self._COUNTERS}}

    def load_state_dict(self, state_dict) -> None:
        """Restore what ``state_dict()`` returned (the optimiser's lr is restored by its own
        ``load_state_dict``). Nothing changes if anything is wrong."""
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict must be a mapping; got {type(state_dict).__name__}")
        if state_dict.get("type") != type(self).__name__:
            raise ValueError(f"state_dict is of a {state_dict.get('type')!r} schedule, not "
                             f"{type(self).__name__!r}")
        expected = {"type", "base_lr", "last_epoch", *self._FIELDS, *self._COUNTERS}
        if set(state_dict) != expected:
            raise KeyError(f"state_dict keys do not match: missing "
                           f"{sorted(expected - set(state_dict))}, unexpected "
                           f"{sorted(set(state_dict) - expected)}")
        last = state_dict["last_epoch"]
        if isinstance(last, (bool, np.bool_)) or not isinstance(last, (int, np.integer)) \
                or last < 0:
            raise ValueError(f"state_dict['last_epoch'] must be an integer >= 0; got {last!r}")
        base_lr = _check_hyper("state_dict['base_lr']", state_dict["base_lr"])
        # The settings through the constructor's checks, on a probe.
        probe = type(self)(self.optimizer, **{k: state_dict[k] for k in self._FIELDS})
        counters = {k: self._check_counter(k, state_dict[k]) for k in self._COUNTERS}
        for name in self._FIELDS:
            setattr(self, name, getattr(probe, name))
        self.__dict__.update(counters)
        self.base_lr, self.last_epoch = base_lr, int(last)

    _COUNTERS: tuple = ()

    def _check_counter(self, name, value):
        return value


class StepLR(_Scheduler):
    r"""Multiply the learning rate by ``gamma`` every ``step_size`` steps, as
    ``torch.optim.lr_scheduler.StepLR``: :math:`\eta_t = \eta_0\, \gamma^{\lfloor t / s
    \rfloor}` after ``t`` calls of ``step()``.

    Parameters
    ----------
    optimizer : SGD or Adam
        Its current ``lr`` is :math:`\eta_0`.
    step_size : int
        :math:`s` >= 1.
    gamma : float, default 0.1

    Examples
    --------
    >>> import numpy as np, lstmx
    >>> opt = lstmx.optim.SGD({"w": np.zeros(3)}, lr=1.0)
    >>> sched = lstmx.optim.StepLR(opt, step_size=2, gamma=0.5)
    >>> for epoch in range(5):
    ...     sched.step()
    >>> opt.lr
    0.25
    """

    _FIELDS = ("step_size", "gamma")

    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer)
        self.step_size = _check_int("step_size", step_size, 1)
        self.gamma = _check_hyper("gamma", gamma)

    def step(self) -> None:
        """Advance one step (an epoch, say) and set the optimiser's lr."""
        self.last_epoch += 1
        self.optimizer.lr = self.base_lr * self.gamma ** (self.last_epoch // self.step_size)


class CosineAnnealingLR(_Scheduler):
    r"""Cosine annealing from the initial learning rate down to ``eta_min`` over ``T_max``
    steps, as ``torch.optim.lr_scheduler.CosineAnnealingLR``:

    .. math::

        \eta_t = \eta_{min} + \tfrac12 (\eta_0 - \eta_{min})
                 \left(1 + \cos\frac{\pi t}{T_{max}}\right)

    after ``t`` calls of ``step()`` (past ``T_max`` it rises again, as PyTorch's).

    Parameters
    ----------
    optimizer : SGD or Adam
    T_max : int
        Steps of the half period, >= 1.
    eta_min : float, default 0
    """

    _FIELDS = ("T_max", "eta_min")

    def __init__(self, optimizer, T_max, eta_min=0.0):
        super().__init__(optimizer)
        self.T_max = _check_int("T_max", T_max, 1)
        self.eta_min = _check_hyper("eta_min", eta_min)

    def step(self) -> None:
        """Advance one step and set the optimiser's lr."""
        self.last_epoch += 1
        cos = math.cos(math.pi * self.last_epoch / self.T_max)
        self.optimizer.lr = self.eta_min + (self.base_lr - self.eta_min) * (1 + cos) / 2


class ReduceLROnPlateau(_Scheduler):
    """Divide the learning rate when a metric stops improving, as
    ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (relative or absolute threshold).

    Parameters
    ----------
    optimizer : SGD or Adam
    mode : {"min", "max"}, default "min"
        Whether lower or higher values of the metric are better.
    factor : float, default 0.1
        The lr is multiplied by it, in (0, 1).
    patience : int, default 10
        Steps without improvement tolerated; the lr falls on the next one.
    threshold : float, default 1e-4
        The smallest change that counts as an improvement.
    threshold_mode : {"rel", "abs"}, default "rel"
        An improvement beats ``best * (1 - threshold)`` ("rel", mode "min") or
        ``best - threshold`` ("abs").
    cooldown : int, default 0
        Steps after a reduction during which no improvement is awaited.
    min_lr : float, default 0
    eps : float, default 1e-8
        Reductions smaller than it are not made.

    Examples
    --------
    >>> import numpy as np, lstmx
    >>> opt = lstmx.optim.Adam({"w": np.zeros(3)}, lr=1e-2)
    >>> sched = lstmx.optim.ReduceLROnPlateau(opt, patience=1, factor=0.5)
    >>> for val_loss in [1.0, 0.9, 0.95, 0.93, 0.92]:
    ...     sched.step(val_loss)
    >>> opt.lr
    0.005
    """

    _FIELDS = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown",
               "min_lr", "eps")
    _COUNTERS = ("best", "num_bad_epochs", "cooldown_counter")

    def _check_counter(self, name, value):
        if name == "best":
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float)) \
                    or math.isnan(value):
                raise ValueError(f"state_dict['best'] must be a number; got {value!r}")
            return float(value)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
                or value < 0:
            raise ValueError(f"state_dict[{name!r}] must be an integer >= 0; got {value!r}")
        return int(value)

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        super().__init__(optimizer)
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max'; got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs'; got {threshold_mode!r}")
        self.patience = _check_int("patience", patience, 0)
        self.cooldown = _check_int("cooldown", cooldown, 0)
        self.mode, self.threshold_mode = mode, threshold_mode
        self.factor = _check_hyper("factor", factor, 0.0, 1.0, low_open=True)
        self.threshold = _check_hyper("threshold", threshold)
        self.min_lr = _check_hyper("min_lr", min_lr)
        self.eps = _check_hyper("eps", eps)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _is_better(self, value) -> bool:
        if self.mode == "min":
            bound = (self.best * (1 - self.threshold) if self.threshold_mode == "rel"
                     else self.best - self.threshold)
            return value < bound
        bound = (self.best * (1 + self.threshold) if self.threshold_mode == "rel"
                 else self.best + self.threshold)
        return value > bound

    def step(self, metric) -> None:
        """Record this step's ``metric`` (a validation loss, say); lower the lr on a plateau."""
        value = _check_hyper("metric", metric, low=-math.inf)
        self.last_epoch += 1
        if self._is_better(value):
            self.best, self.num_bad_epochs = value, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            old = self.optimizer.lr
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                self.optimizer.lr = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
