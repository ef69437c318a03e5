"""Hypothesis profiles for the whole suite, chosen with ``HYPOTHESIS_PROFILE``.

- ``ci`` (the default): modest example counts, derandomised so that a CI run is repeatable
  and a red run is a real regression, not the luck of the draw.
- ``fuzz``: high example counts with fresh randomness each run; for hunting
  (``HYPOTHESIS_PROFILE=fuzz python -m pytest tests/test_properties.py tests/fuzz_validation.py``).
- ``dev``: a handful of examples, for a quick local edit-and-run loop.

Every profile has ``deadline=None``: kernel timings on a shared 2-core machine (and on the
``LSTMX_DEBUG=1`` build, or under valgrind) are far too noisy for per-example deadlines.
"""
import os
import warnings

from hypothesis import HealthCheck, settings

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
