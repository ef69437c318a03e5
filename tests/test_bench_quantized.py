"""The reduced-precision bench (``python -m lstmx bench --quantized``) on tiny sizes.

onnxruntime's int8 peer really is ``DynamicQuantizeLSTM`` run with the bench's threads; the
speedup, error-ratio and CPU-flag targets are computed right; a quantised run has its rows,
errors and report section. Seconds.
"""
import json

import numpy as np
import pytest

from _helpers import require
import lstmx
from lstmx import _bench_impls, _bench_quantized, _bench_report, _bench_run, _bench_targets
from lstmx.__main__ import main as cli

TINY = {"M": _bench_impls.BenchConfig("M", T=4, B=3, I=5, H=6),
        "cell": _bench_impls.BenchConfig("cell", T=1, B=2, I=3, H=4, cell=True)}
FAST = dict(repeat=2, warmup=1, min_time=0.0, warm_time=0.0, gap=0.0, peak=False,
            memory_config=None, modes=("forward",))


def _onnx_ops(data):
    onnx = require("onnx")
    model = onnx.load_from_string(data)
    return [(n.domain, n.op_type) for n in model.graph.node], model


@pytest.mark.parametrize("reduce_range", [False, True])
def test_onnxruntime_int8_is_dynamic_quantize_lstm(reduce_range):
    require("onnxruntime")
    model = lstmx.LSTM(5, 6, num_layers=2, bidirectional=True, seed=0)
    ops, proto = _onnx_ops(_bench_quantized.quantize_with_onnxruntime(
        model, reduce_range=reduce_range))
    assert ops.count(("com.microsoft", "DynamicQuantizeLSTM")) == 2
    assert ("", "LSTM") not in ops
    from onnx import numpy_helper
    weights = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    w = weights["W_l0_quantized"]
    assert w.dtype == np.int8 and w.shape == (2, 5, 4 * 6)  # (D, I, 4H)
    if reduce_range:  # 7-bit weights
        assert np.abs(w.astype(int)).max() <= 64


def test_onnxruntime_int8_reports_its_time_and_error():
    require("onnxruntime")
    model = lstmx.LSTM(5, 6, batch_first=True, seed=0)
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    r = _bench_quantized.onnxruntime_int8(model, x, threads=1, repeat=2, reduce_range=True)
    want = model(x)[0]
    assert r["y"].shape == want.shape and r["median_s"] > 0
    assert r["max_abs_error"] == pytest.approx(np.abs(r["y"] - want).max())
    # int8 with 7-bit weights: off by rounding, not by a different computation (the outputs
    # of a tanh-bounded cell are in (-1, 1)).
    assert 0 < r["max_abs_error"] < 0.1 * np.abs(want).max()


@pytest.mark.parametrize("config", list(TINY))
@pytest.mark.parametrize("impl", _bench_quantized.QUANTIZED_IMPLS)
def test_quantized_impls_compute_the_model(impl, config):
    """Each is inference only, on lstmx's weights and x, with y shaped as lstmx's."""
    if impl.startswith("onnxruntime"):
        require("onnxruntime")
    ours = _bench_impls.build_impl("lstmx", TINY[config])
    other = _bench_impls.build_impl(impl, TINY[config], threads=1)
    assert not other.trainable
    with pytest.raises(NotImplementedError, match="no training"):
        other.train()
    want = ours.output()
    got = other.output()
    assert got.shape == want.shape and got.dtype == np.float32
    assert 0 < _bench_quantized.max_abs_error(got, want) < 0.5
    if impl.startswith("lstmx"):
        np.testing.assert_array_equal(got, other.quantized(*(
            (other.x, other.state) if TINY[config].cell else (other.x,)))[0])


@pytest.mark.parametrize("impl", _bench_quantized.QUANTIZED_IMPLS)
def test_quantized_impls_are_float32_only(impl):
    with pytest.raises(_bench_impls.UnavailableError, match="float32"):
        _bench_impls.build_impl(impl, TINY["M"], np.float64)


def _timings(**samples):
    return {n: {"samples_s": s, "median_s": float(np.median(s)), "spread": 0.0, "number": 1}
            for n, s in samples.items()}


def test_speedup_error_ratio_and_cpu_flag_targets(tmp_path):
    res = {
        "settings": {"impls": ["lstmx", "lstmx-int8", "lstmx-bf16", "onnxruntime-int8"],
                     "threads": 1},
        "configs": {"M": {}, "L": {}},
        "machine": {"cpu_flags": {"avx512_bf16": False, "avx2": True}},
        # Rounds: ort/int8 = 3, 2, 4 -> median 3; the medians' ratio would be 2.5.
        "results": {"M": {"forward": _timings(**{"lstmx": [4.0, 4.0, 4.0],
                                                 "lstmx-int8": [1.0, 2.0, 1.0],
                                                 "onnxruntime-int8": [3.0, 4.0, 4.0]})},
                    "L": {"forward": _timings(**{"lstmx": [5.0, 5.0], "lstmx-int8": [2.0, 2.0],
                                                 "lstmx-bf16": [2.0, 2.0]})}},
        "max_abs_error": {"M": {"lstmx-int8": 0.01, "onnxruntime-int8": 0.02},
                          "L": {"lstmx-int8": 0.01}},
    }
    path = tmp_path / "targets.json"
    path.write_text(json.dumps({"schema": _bench_targets.TARGETS_SCHEMA, "targets": [
        {"name": "vs ort", "metric": "speedup", "mode": "forward", "impl": "lstmx-int8",
         "vs": "onnxruntime-int8", "configs": ["M", "L"], ">=": 1.2},
        {"name": "vs f32", "metric": "speedup", "mode": "forward", "impl": "lstmx-int8",
         "vs": "lstmx", "configs": ["L"], ">=": 2.5},
        {"name": "bf16", "metric": "speedup", "mode": "forward", "impl": "lstmx-bf16",
         "vs": "lstmx", "configs": ["L"], "cpu_flag": "avx512_bf16", ">=": 1.6},
        {"name": "err", "metric": "error_ratio", "impl": "lstmx-int8",
         "vs": "onnxruntime-int8", "configs": ["M", "L"], "<=": 1.0},
        {"name": "two threads", "metric": "speedup", "mode": "forward", "impl": "lstmx-int8",
         "vs": "lstmx", "configs": ["M"], "threads": 2, ">=": 1.0},
        {"name": "not asked", "metric": "speedup", "mode": "forward", "impl": "lstmx-int8",
         "vs": "onnxruntime-int8r", "configs": ["M"], ">=": 1.0}]}))
    rows = _bench_targets.evaluate_targets(res, _bench_targets.load_targets(path))
    got = {t["name"]: (t["status"], t["measured"]) for t in rows}
    assert got == {
        "vs ort, M": ("PASS", 3.0), "vs ort, L": ("n/a", None),
        "vs f32, L": ("PASS", 2.5),  # the bound is inclusive
        "bf16, L (n/a: the CPU has no avx512_bf16)": ("n/a", None),
        "err, M": ("PASS", 0.5), "err, L": ("n/a", None),
    }  # not listed: "two threads" (a 1-thread run), "not asked" (ort-int8r not run)
    res["machine"]["cpu_flags"] = None  # an OS that does not say
    rows = _bench_targets.evaluate_targets(res, _bench_targets.load_targets(path))
    assert "bf16, L (n/a: the CPU does not say if it has avx512_bf16)" in {
        t["name"] for t in rows}
    res["machine"]["cpu_flags"] = {"avx512_bf16": True}
    rows = _bench_targets.evaluate_targets(res, _bench_targets.load_targets(path))
    assert {t["name"]: t["status"] for t in rows}["bf16, L"] == "PASS"


def test_quantized_run_and_report():
    require("onnxruntime")
    impls = ("lstmx", "onnxruntime") + _bench_quantized.QUANTIZED_IMPLS
    res = _bench_run.run_benchmarks({"M": TINY["M"]}, impls=impls, threads=1, **FAST)
    assert res["unavailable"]["M"] == {}
    assert set(res["results"]["M"]) == {"forward"}  # inference only
    assert set(res["results"]["M"]["forward"]) == set(impls)
    errors = res["max_abs_error"]["M"]
    assert set(errors) == set(impls) - {"lstmx"}
    assert errors["onnxruntime"] < 1e-5 < errors["lstmx-int8"]
    assert res["settings"]["modes"] == ["forward"]
    assert set(res["machine"]["cpu_flags"] or {}) <= set(_bench_quantized.CPU_FLAGS)
    report = _bench_report.format_report(res)
    assert "reduced precision, forward on 1 thread(s)" in report
    line = next(x for x in report.splitlines() if x.startswith("M ") and "e-" in x)
    assert line.count("x") == 5 and "n/a" not in line  # every speedup and error measured


def test_dot_peak_fractions():
    impls = ("lstmx", "lstmx-int8", "lstmx-bf16")
    res = _bench_run.run_benchmarks({"M": TINY["M"]}, impls=impls, threads=1,
                                    **dict(FAST, peak=True, peak_time=0.005))
    dots = res["peak"]["dot"]
    assert set(dots) == {"int8", "bfloat16"}
    fractions = res["dot_peak_fraction"].get("M", {}).get("forward", {})
    assert "lstmx" not in fractions and set(res["peak_fraction"]["M"]["forward"]) == {"lstmx"}
    for impl, kind in (("lstmx-int8", "int8"), ("lstmx-bf16", "bfloat16")):
        if "error" in dots[kind]:
            assert impl not in fractions
            continue
        rate = res["rates_gflops"]["M"]["forward"][impl] / 2
        assert fractions[impl] == pytest.approx(rate / dots[kind]["gmacs"]["1"])
    report = _bench_report.format_report(res)
    assert "rate and fraction of the dot-product peak" in report
    if fractions:
        assert next(x for x in report.splitlines()[::-1] if x.startswith("M ")).count("%") \
            == len(fractions)


def test_cli_quantized(monkeypatch, capsys, tmp_path):
    require("onnxruntime")
    monkeypatch.setitem(_bench_impls.ALL_CONFIGS, "M", TINY["M"])
    out = tmp_path / "q.json"
    cli(["bench", "--quantized", "--configs", "M", "--quick", "--repeat", "2", "--retries",
         "0", "--no-peak", "--threads", "1", "--json", str(out)])
    res = json.loads(out.read_text())
    assert res["settings"]["impls"] == ["lstmx", "onnxruntime",
                                        *_bench_quantized.QUANTIZED_IMPLS]
    assert res["memory"] is None and list(res["results"]["M"]) == ["forward"]
    assert "reduced precision" in capsys.readouterr().out


def test_asv_suite_runs_the_quantized_configurations(monkeypatch):
    """benchmarks/benchmarks/bench_quantized.py names the bench's configurations and
    implementations, and its error benchmark is the bench's max abs error."""
    import importlib
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    monkeypatch.delitem(sys.modules, "benchmarks", raising=False)
    suite = importlib.import_module("benchmarks.bench_quantized")
    assert suite.CONFIGS == list(_bench_quantized.QUANTIZED_CONFIGS)
    assert set(suite.IMPLS) == {"lstmx", *_bench_quantized.QUANTIZED_IMPLS}
    monkeypatch.setitem(_bench_impls.ALL_CONFIGS, "M", TINY["M"])
    bench = suite.QuantizedError()
    bench.setup("M", "lstmx-int8")
    want = _bench_impls.build_impl("lstmx", TINY["M"]).output()
    got = _bench_impls.build_impl("lstmx-int8", TINY["M"]).output()
    assert bench.track_max_abs_error("M", "lstmx-int8") == _bench_quantized.max_abs_error(
        got, want)
    timed = suite.QuantizedForward()
    timed.setup("M", "lstmx-bf16")
    timed.time_forward("M", "lstmx-bf16")
