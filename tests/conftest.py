"""Hypothesis profiles for the whole suite, chosen with ``HYPOTHESIS_PROFILE``.

- ``ci`` (the default): modest example counts, derandomised so that a CI run is repeatable
  and a red run is a real regression, not the luck of the draw.
- ``fuzz``: high example counts with fresh randomness each run; for hunting
  (``HYPOTHESIS_PROFILE=fuzz python -m pytest tests/test_properties.py tests/fuzz_validation.py``).
- ``dev``: a handful of examples, for a quick local edit-and-run loop.

Also the fixtures ``torch``, ``keras`` and ``ort`` (the optional libraries, as modules) and
``kernel_calls``: a spy on every entry into compiled code.

Every profile has ``deadline=None``: kernel timings on a shared 2-core machine (and on the
``LSTMX_DEBUG=1`` build, or under valgrind) are far too noisy for per-example deadlines.
"""
import os
import warnings

import pytest
from hypothesis import HealthCheck, settings

from _helpers import require

# Hypothesis writes a patch for a failing example with libcst, whose import raises a
# DeprecationWarning (mypy_extensions); under filterwarnings=error that turned a plain failure
# report into an INTERNALERROR. Importing it here, quietly, caches the module.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # libcst is optional
        pass

_COMMON = dict(
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)

settings.register_profile("ci", max_examples=25, derandomize=True, **_COMMON)
settings.register_profile("fuzz", max_examples=2000, **_COMMON)
settings.register_profile("dev", max_examples=5, derandomize=True, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _entry_points():
    """Every way into compiled code: the engine's two entry points and every public function
    of every kernel module (the baseline one and the variant the engine dispatches to,
    whatever their current set of functions is)."""
    from lstmx import _engine, _kernels

    points = [(_engine, "forward"), (_engine, "backward")]
    modules = {_kernels.__name__: _kernels}
    dispatched = getattr(_engine, "_kernels", None)
    if dispatched is not None:
        modules[dispatched.__name__] = dispatched
    for module in modules.values():
        for name in dir(module):
            obj = getattr(module, name)
            if not name.startswith("_") and callable(obj) and not isinstance(obj, type):
                points.append((module, name))
    return points


# The optional libraries of the interop and agreement tests, as modules (torch on one thread:
# the tests compare results, not speed); missing ones skip, or fail in CI (_helpers.require).
@pytest.fixture(scope="module")
def torch():
    torch = require("torch")
    torch.set_num_threads(1)
    return torch


@pytest.fixture(scope="module")
def keras():
    return require("keras")


@pytest.fixture(scope="module")
def ort():
    require("onnx")
    return require("onnxruntime")


@pytest.fixture
def kernel_calls(monkeypatch):
    """A list that records every call into the engine or the compiled kernels.

    Tests that bad input is refused "before any kernel runs" clear it, make the call and
    assert it is still empty. (Under hypothesis, clear it at the start of each example.)
    ``cell_step`` first checks that its arrays are ready for the kernel and returns None,
    having run nothing, when they are not (LSTMCell then validates them in full): a call
    that declined is not recorded.
    """
    calls = []

    def spy(module, name, real):
        def wrapper(*args, **kwargs):
            if name == "cell_step":
                result = real(*args, **kwargs)
                if result is not None:
                    calls.append(f"{module.__name__}.{name}")
                return result
            calls.append(f"{module.__name__}.{name}")
            return real(*args, **kwargs)
        return wrapper

    for module, name in _entry_points():
        monkeypatch.setattr(module, name, spy(module, name, getattr(module, name)))
    return calls
