"""The phase timers of the layer drivers and ``python -m lstmx bench --profile``, on tiny sizes.

They check the accounting, not the speed: each pass's phases are recorded where they run and
nowhere else, they add up to no more than the wall time, the timers never change a result,
and every kernel variant (each driver: serial, threaded, projection) carries them.
"""
import numpy as np
import pytest
from numpy.testing import assert_array_equal
from threadpoolctl import threadpool_limits

import lstmx
from lstmx import _bench_impls, _bench_profile
from lstmx import _dispatch
from lstmx.__main__ import main as cli

PHASES = ("input projection", "recurrent products", "cell (element-wise)",
          "weight gradients", "synchronisation")
TINY = {"S": _bench_impls.BenchConfig("S", T=4, B=2, I=3, H=5),
        "bi": _bench_impls.BenchConfig("bi", T=3, B=2, I=3, H=4, num_layers=2,
                                       bidirectional=True),
        "cell": _bench_impls.BenchConfig("cell", T=1, B=2, I=3, H=4, cell=True)}


def _kernel_modules():
    return [_dispatch.load(v) for v in _dispatch.available()]


@pytest.mark.parametrize("kernels", _kernel_modules(), ids=_dispatch.available())
def test_timers_are_off_and_zero_unless_asked(kernels):
    assert tuple(kernels.PHASE_NAMES) == PHASES
    kernels.profile_phases(False)
    lstm = lstmx.LSTM(3, 4, seed=0)
    lstm(np.ones((3, 2, 3), np.float32))
    assert kernels.phase_times() == {}


# Shapes that take each layer driver of the SIMD variants: the serial one with gemm_small
# (B=1), with a projection, and the threaded one on the tiled GEMM (4BH^2 above its limit).
DRIVERS = {"serial": (dict(input_size=3, hidden_size=5), 6, 1),
           "projection": (dict(input_size=7, hidden_size=20, proj_size=9), 6, 5),
           "threaded": (dict(input_size=64, hidden_size=128, bidirectional=True), 3, 40)}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("driver", list(DRIVERS))
def test_phases_are_recorded_where_they_run_and_change_no_bit(driver, threads):
    options, T, B = DRIVERS[driver]
    lstm = lstmx.LSTM(**options, dtype=np.float64, seed=1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, options["input_size"]))
    dy = rng.standard_normal((T, B, lstm.config.num_directions * lstm.config.output_size))
    kernels = _dispatch.kernels
    with threadpool_limits(threads):
        _, _, cache = lstm.forward_train(x)
        want = lstm.backward(cache, dy)
        kernels.profile_phases(True)
        try:
            y, _, cache = lstm.forward_train(x)
            forward = kernels.phase_times()
            kernels.profile_phases(True)
            got = lstm.backward(cache, dy)
            backward = kernels.phase_times()
        finally:
            kernels.profile_phases(False)
    assert_array_equal(got[0], want[0])
    for name in want[2]:
        assert_array_equal(got[2][name], want[2][name])
    for times in (forward, backward):
        assert times, "no thread recorded a phase"
        for row in times.values():
            assert len(row) == len(PHASES) and min(row) >= 0
    fwd = np.sum(list(forward.values()), axis=0)
    bwd = np.sum(list(backward.values()), axis=0)
    assert fwd[0] > 0 and fwd[1] > 0 and fwd[2] > 0
    assert fwd[3] == 0, "forward computes no weight gradient"
    assert bwd[0] > 0 and bwd[1] > 0 and bwd[2] > 0 and bwd[3] > 0


def test_run_profile_splits_each_pass_within_its_wall_time():
    prof = _bench_profile.run_profile(TINY, threads=1, min_time=0.0, min_calls=2)
    assert prof["phases"] == list(PHASES)
    assert set(prof["configs"]) == {"S", "bi"}  # the cell has no layer driver
    for modes in prof["configs"].values():
        assert set(modes) == set(_bench_profile.MODES)
        for mode, r in modes.items():
            assert r["calls"] >= 2 and r["threads_recorded"] >= 1
            phases = r["phases_s"]
            assert all(v >= 0 for v in phases.values())
            assert sum(phases.values()) <= r["wall_s"] * (1 + 1e-9)
            assert (phases["weight gradients"] > 0) == (mode == "backward")
    text = _bench_profile.format_profile(prof)
    assert "bi" in text and "backward" in text and "outside" in text


def test_cli_profile_writes_json(tmp_path, capsys):
    path = tmp_path / "p.json"
    assert cli(["bench", "--profile", "--quick", "--configs", "I1", "--threads", "1",
                "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "lstmx phase profile" in out and "I1" in out
    import json
    saved = json.loads(path.read_text())
    assert set(saved["configs"]["I1"]) == set(_bench_profile.MODES)
