"""The scikit-learn estimators: scikit-learn's own checks, pipelines, search, early stopping."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from _helpers import require

require("sklearn")
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from lstmx.sklearn import LSTMClassifier, LSTMRegressor  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Small and brief, yet enough for the checks' accuracy bars (R^2 > 0.5, accuracy > 0.83 on
# the training data).
FAST = dict(hidden_size=8, learning_rate=1e-2, max_iter=50)


def _run_with_array_api(estimator, check):
    """check_array_api_input needs SCIPY_ARRAY_API=1 before SciPy is first imported: run it
    in a fresh interpreter rather than skip it."""
    code = (
        "import json, sys\n"
        "from sklearn.utils.estimator_checks import check_array_api_input\n"
        "import lstmx.sklearn as s\n"
        "est = getattr(s, sys.argv[1])(**json.loads(sys.argv[2]))\n"
        "check_array_api_input(sys.argv[1], est, **json.loads(sys.argv[3]))\n")
    env = dict(os.environ, SCIPY_ARRAY_API="1", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", code, type(estimator).__name__,
                           json.dumps(estimator.get_params() | {"dtype": "float64"}),
                           json.dumps(check.keywords)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


@parametrize_with_checks([LSTMRegressor(**FAST), LSTMClassifier(**FAST)])
def test_sklearn_estimator_checks(estimator, check):
    if getattr(check, "func", None) is not None and \
            check.func.__name__ == "check_array_api_input":
        _run_with_array_api(estimator, check)
    else:
        check(estimator)
