"""The benchmark harness (``python -m lstmx bench``, shared with asv) on tiny sizes.

These check the machinery, not the speed: every implementation computes the same thing from
the same weights, the JSON has its documented structure, ratios and targets are computed
right, and absent libraries show as "n/a". A few seconds, most of it importing torch.
"""
import contextlib
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from _helpers import amx_granted, require
from lstmx import (_bench_impls, _bench_machine, _bench_memory, _bench_quantized, _dispatch,
                   _bench_report, _bench_run, _bench_sweep, _bench_targets, _bench_timing)
from lstmx.__main__ import main as cli

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ROOT / "benchmarks" / "targets.json"
TINY = {
    "S": _bench_impls.BenchConfig("S", T=4, B=2, I=3, H=5),
    "M-bi2": _bench_impls.BenchConfig("M-bi2", T=3, B=2, I=3, H=4, num_layers=2,
                                      bidirectional=True),
    "cell": _bench_impls.BenchConfig("cell", T=1, B=2, I=3, H=4, cell=True),
}
# A sweep of three shapes: the base, one other I, one other H.
TINY_SWEEP = dict(base={"T": 2, "B": 1, "I": 2, "H": 3},
                  axes={"I": (1, 2), "H": (3, 4), "B": (1,), "T": (2,)})
FAST = dict(repeat=2, warmup=1, min_time=0.0, warm_time=0.0, gap=0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", list(TINY))
@pytest.mark.parametrize("impl", ["reference", "torch", "onnxruntime"])
def test_implementations_compute_the_same(impl, config, dtype):
    """Same weights, same x, dy: outputs and gradients agree with lstmx's."""
    require({"reference": "numpy", "torch": "torch", "onnxruntime": "onnxruntime"}[impl])
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-12)
    ours = _bench_impls.build_impl("lstmx", TINY[config], dtype)
    try:
        other = _bench_impls.build_impl(impl, TINY[config], dtype)
    except _bench_impls.UnavailableError as err:
        # onnxruntime 1.31's CPU LSTM kernel is float32 only; anything else must run.
        assert impl == "onnxruntime" and dtype == np.float64, err
        return
    assert_allclose(other.output(), ours.output(), **tol)
    if other.trainable:
        want, got = ours.gradients(), other.gradients()
        assert set(got) == set(want)
        for name in want:
            assert_allclose(got[name], want[name], **tol, err_msg=name)
        other.prepare_backward()
        other.backward()  # backward is timed repeatedly on one cache: it must allow that
        other.backward()


def test_onnxruntime_has_no_training():
    require("onnxruntime")
    ort = _bench_impls.build_impl("onnxruntime", TINY["S"], np.float32)
    assert not ort.trainable
    with pytest.raises(NotImplementedError, match="no training"):
        ort.train()


def test_build_impl_rejects_unknown_names():
    with pytest.raises(ValueError, match="impl must be one of"):
        _bench_impls.build_impl("tensorflow", "S")
    with pytest.raises(ValueError, match="config must be one of"):
        _bench_impls.build_impl("lstmx", "XL")


def test_forward_flops_follow_the_equations():
    # 2 T B 4H (I + H) per layer and direction; layer 1 of a bidirectional stack reads 2H.
    assert _bench_impls.CONFIGS["L"].forward_flops() == 2 * 100 * 64 * 4 * 512 * (512 + 512)
    c = TINY["M-bi2"]
    per_dir = [2 * 3 * 2 * 16 * (3 + 4), 2 * 3 * 2 * 16 * (8 + 4)]
    assert c.forward_flops() == 2 * sum(per_dir)


def test_measure_keeps_repeat_samples_and_interleaves():
    calls = []
    ops = {name: ((lambda name=name: calls.append(name)), contextlib.nullcontext)
           for name in "abc"}
    timings = _bench_timing.measure(ops, repeat=4, warmup=1, min_time=0.0, warm_time=0.0, gap=0.0)
    assert set(timings) == set("abc")
    for t in timings.values():
        assert len(t.samples) == 4 and t.number == 1
        assert t.median == np.median(t.samples)
    # After the warm-up (2 calls each), round r starts with the r-th name: round-robin.
    rounds = [calls[6 + 3 * r:6 + 3 * r + 3] for r in range(5)]
    assert [r[0] for r in rounds] == list("abcab")
    assert all(sorted(r) == list("abc") for r in rounds)


def test_measure_primes_each_sample_after_the_pause_with_an_untimed_call():
    # With a pause between samples, each sample follows one call of its own operation, so that
    # no sample starts on cores left idle by the pause.
    calls = []
    ops = {name: ((lambda name=name: calls.append(name)), contextlib.nullcontext)
           for name in "ab"}
    timings = _bench_timing.measure(ops, repeat=3, warmup=0, min_time=0.0, warm_time=0.0,
                                    gap=1e-4)
    assert all(len(t.samples) == 3 for t in timings.values())
    rounds = calls[4:]                       # after the warm-up (2 calls each)
    assert rounds == ["a", "a", "b", "b", "b", "b", "a", "a", "a", "a", "b", "b"]


def test_measure_time_budget_keeps_min_repeat():
    ops = {"a": (lambda: None, contextlib.nullcontext)}
    timings = _bench_timing.measure(ops, repeat=50, warmup=0, min_time=0.0, warm_time=0.0, gap=0.0,
                             max_time=0.0, min_repeat=3)
    assert len(timings["a"].samples) == 3


def _scripted_measure(monkeypatch, spreads):
    """Make ``measure`` return, call after call, timings with these spreads (each a dict
    name -> interquartile range / median, the median being 1)."""
    script = iter(spreads)

    def fake(ops, **kwargs):
        return {name: _bench_timing.Timing([1 - s / 2, 1 - s / 2, 1, 1 + s / 2, 1 + s / 2], 1)
                for name, s in next(script).items()}
    monkeypatch.setattr(_bench_timing, "measure", fake)


def test_measure_settled_measures_noisy_timings_again(monkeypatch):
    _scripted_measure(monkeypatch, [{"a": 0.1, "b": 0.5}, {"a": 0.3, "b": 0.1},
                                    {"a": 0.2, "b": 0.05}, {"a": 0.0, "b": 0.0}])
    retried = []
    timings, discarded = _bench_timing.measure_settled({}, retries=5, on_retry=retried.append)
    # The third attempt is the first with nothing noisy; the fourth is never measured.
    assert timings["a"].spread == pytest.approx(0.2)
    assert [round(d["b"].spread, 3) for d in discarded] == [0.5, 0.1]
    assert [set(r) for r in retried] == [{"b"}, {"a"}]


def test_measure_settled_keeps_the_least_noisy_attempt(monkeypatch):
    _scripted_measure(monkeypatch, [{"a": 0.3, "b": 0.9}, {"a": 0.4, "b": 0.1},
                                    {"a": 0.6, "b": 0.0}])
    timings, discarded = _bench_timing.measure_settled({}, retries=2)
    assert timings["a"].spread == pytest.approx(0.4)  # the attempt whose worst is least bad
    assert len(discarded) == 2
    _scripted_measure(monkeypatch, [{"a": 0.9}])
    timings, discarded = _bench_timing.measure_settled({}, retries=0)
    assert timings["a"].spread == pytest.approx(0.9) and discarded == []


def test_ratios_pair_the_samples_of_each_round():
    timings = {"lstmx": _bench_timing.Timing([1.0, 3.0, 2.0], 1),
               "torch": _bench_timing.Timing([5.0, 6.0, 100.0], 1)}
    # Rounds: 5/1, 6/3, 100/2.
    assert _bench_timing.ratios(timings) == {"torch": 5.0}
    assert _bench_timing.ratios_of_medians(timings) == {"torch": 3.0}
    assert _bench_timing.ratios({"torch": timings["torch"]}) == {}
    assert _bench_timing.ratios_of_medians({"torch": timings["torch"]}) == {}
    assert timings["torch"].spread == pytest.approx((53.0 - 5.5) / 6.0)
    # torch 1.1x slower throughout; the machine at half speed in rounds 2 and 3 (both
    # samples), and lstmx alone hit in round 4: the ratio of medians reads torch as faster.
    machine = np.array([1.0, 1.0, 2.0, 2.0, 1.0])
    timings = {"lstmx": _bench_timing.Timing(list(machine * [1, 1, 1, 1, 1.5]), 1),
               "torch": _bench_timing.Timing(list(1.1 * machine), 1)}
    assert _bench_timing.ratios(timings)["torch"] == pytest.approx(1.1)
    assert _bench_timing.ratios_of_medians(timings)["torch"] == pytest.approx(1.1 / 1.5)
    with pytest.raises(ValueError, match="torch has 2, lstmx 5"):
        _bench_timing.ratios({"lstmx": timings["lstmx"],
                              "torch": _bench_timing.Timing([1.0, 2.0], 1)})


def _targets(tmp_path, *targets):
    path = tmp_path / "targets.json"
    path.write_text(json.dumps({"schema": _bench_targets.TARGETS_SCHEMA,
                                "targets": list(targets)}))
    return _bench_targets.load_targets(path)


def test_targets_pass_fail_and_missing(tmp_path):
    res = {
        "settings": {"impls": ["lstmx", "torch", "onnxruntime", "reference"], "threads": 2},
        "configs": {"S": {}, "cell": {}, "L": {}},
        "ratios": {"S": {"forward": {"torch": 2.0, "onnxruntime": 0.5},
                         "train": {"torch": 3.0, "reference": 9.99}},
                   "cell": {"forward": {"torch": 6.0}}, "L": {"forward": {}}},
        "peak_fraction": {"L": {"forward": {"lstmx": 0.82}}},
        "memory": {"config": "L", "lstmx": {"growth_mib": 100.0},
                   "torch": {"growth_mib": 300.0}},
        "sweep": {"rows": [{"ratios": {"forward": {"torch": 1.2, "lstmx-baseline": 1.5}}},
                           {"ratios": {"forward": {"torch": 0.85}}}]},
    }
    targets = _targets(
        tmp_path,
        {"name": "fwd vs torch", "metric": "ratio", "mode": "forward", "impl": "torch",
         "configs": ["S", "M", "L", "cell"], ">=": 1.0},
        {"name": "fwd vs ort", "metric": "ratio", "mode": "forward", "impl": "onnxruntime",
         "configs": ["S"], ">=": 1.0},
        {"name": "train vs torch", "metric": "ratio", "mode": "train", "impl": "torch",
         "configs": ["S"], ">=": 3.0},
        {"name": "peephole", "metric": "ratio", "mode": "train", "impl": "lstmx-peephole",
         "configs": ["S"], "<=": 1.1},
        {"name": "peak 1", "metric": "peak_fraction", "mode": "forward", "impl": "lstmx",
         "configs": ["L"], "threads": 1, ">=": 0.85},
        {"name": "peak 2", "metric": "peak_fraction", "mode": "forward", "impl": "lstmx",
         "configs": ["L"], "threads": 2, ">=": 0.8},
        {"name": "memory", "metric": "memory_ratio", "impl": "lstmx", "vs": "torch",
         "<=": 0.5},
        {"name": "sweep torch", "metric": "sweep_min_ratio", "impl": "torch",
         "modes": ["forward", "train"], ">=": 0.9},
    )
    rows = _bench_targets.evaluate_targets(res, targets)
    got = {t["name"]: (t["status"], t["measured"]) for t in rows}
    assert got == {
        "fwd vs torch, S": ("PASS", 2.0), "fwd vs torch, cell": ("PASS", 6.0),
        "fwd vs torch, L": ("n/a", None),  # asked for, not measured
        "fwd vs ort, S": ("FAIL", 0.5),
        "train vs torch, S": ("PASS", 3.0),  # the bound is inclusive
        "peak 2, L": ("PASS", 0.82),
        "memory, L": ("PASS", pytest.approx(1 / 3)),
        "sweep torch, forward": ("FAIL", 0.85), "sweep torch, train": ("n/a", None),
    }
    # Not listed: M (not run), lstmx-peephole (not asked for), peak 1 (a 2-thread run).
    assert _bench_targets.any_failed(rows)
    assert not _bench_targets.any_failed([r for r in rows if r["status"] != "FAIL"])
    text = _bench_targets.format_targets(rows)
    assert "FAIL  fwd vs ort, S" in text and "5 PASS, 2 FAIL, 2 n/a" in text


def test_load_targets_rejects_malformed_files(tmp_path):
    with pytest.raises(ValueError, match="metric must be one of"):
        _targets(tmp_path, {"name": "x", "metric": "speed", ">=": 1})
    with pytest.raises(ValueError, match="exactly one of"):
        _targets(tmp_path, {"name": "x", "metric": "ratio", "mode": "forward",
                            "impl": "torch", "configs": ["S"]})
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"targets": []}))
    with pytest.raises(ValueError, match="schema"):
        _bench_targets.load_targets(path)


def test_project_targets_are_ratios_and_fractions():
    """The project's targets file loads, names only known configurations and implementations,
    and holds no absolute time."""
    targets = _bench_targets.load_targets(TARGETS)
    known = set(_bench_impls.ALL_CONFIGS)
    impls = (set(_bench_impls.IMPLEMENTATIONS) | set(_bench_quantized.QUANTIZED_IMPLS)
             | {_bench_sweep.BASELINE})
    for t in targets:
        assert set(t.get("configs", [])) <= known, t
        assert t["impl"] in impls and t.get("vs", "lstmx") in impls, t
        assert t["metric"] in ("ratio", "peak_fraction", "memory_ratio", "sweep_min_ratio",
                               "speedup", "error_ratio")
        assert t.get("cpu_flag") in (None, *_bench_quantized.CPU_FLAGS), t


def test_new_configurations():
    c = _bench_impls.CONFIGS
    assert (c["I1"].T, c["I1"].B, c["I1"].I, c["I1"].H) == (200, 32, 1, 64)
    assert (c["H1024"].T, c["H1024"].B, c["H1024"].I, c["H1024"].H) == (20, 128, 256, 1024)
    assert (c["T400"].T, c["T400"].B, c["T400"].I, c["T400"].H) == (400, 8, 64, 128)
    assert c["L"].train_flops() == 3 * c["L"].forward_flops()


def test_fma_peak_is_measured():
    """The loop runs on 1 and on 2 threads, and its checksum (the accumulators' fixed point,
    1 per lane) shows that the loop ran rather than a rate computed from nothing."""
    from lstmx import _peak

    isa = _peak.best_isa()
    assert isa in ("avx512f", "avx2+fma", "sse2", "scalar")
    lanes = _peak.flops_per_iteration(False) // (2 * _peak.accumulators())
    assert _peak.fma_loop(False, 100_000) == pytest.approx(_peak.accumulators() * lanes,
                                                           rel=1e-3)
    if isa != "scalar":
        assert _peak.flops_per_iteration(True) * 2 == _peak.flops_per_iteration(False)
    with pytest.raises(ValueError, match="iterations must be >= 0"):
        _peak.fma_loop(False, -1)
    peak = _bench_machine.fma_peak(2, seconds=0.005, repeat=1)
    assert set(peak["gflops"]) == {"float32", "float64"}
    for rates in peak["gflops"].values():
        assert set(rates) == {"1", "2"} and all(r > 0 for r in rates.values())


def test_dot_product_peaks_are_measured_where_the_cpu_has_them():
    """The checksums count the instructions: vpdpbusd adds 4 products of ones to each int32
    lane, vdpbf16ps 2 to each float32 lane, on 16 lanes of 12 accumulators starting at k."""
    from lstmx import _peak

    flags = _bench_quantized.cpu_flags() or {}
    peaks = _bench_machine.dot_peak(2, seconds=0.005, repeat=1)
    acc = _peak.accumulators()
    for kind, flag, per_lane in (("int8", "avx512_vnni", 4), ("bfloat16", "avx512_bf16", 2)):
        lanes = _peak.macs_per_iteration(kind) // (acc * per_lane)
        assert lanes == 16
        if not flags.get(flag) or not flags.get("avx512f"):
            assert _peak.dot_instruction(kind) is None and "error" in peaks[kind]
            with pytest.raises(ValueError, match="this CPU has no"):
                _peak.dot_loop(kind, 1)
            continue
        assert _peak.dot_loop(kind, 1000) == lanes * sum(k + per_lane * 1000
                                                         for k in range(acc))
        # The peak of what the quantised kernels run: AMX's where they run it.
        tile = _peak.tile_instruction(kind)
        running = (_dispatch.quantized().INT8_PRODUCTS if kind == "int8"
                   else _dispatch.quantized().BF16_PRODUCTS)
        assert peaks[kind]["instruction"] == (tile if running == tile
                                              else _peak.dot_instruction(kind))
        assert set(peaks[kind]["gmacs"]) == {"1", "2"}
        assert all(r > 0 for r in peaks[kind]["gmacs"].values())
    with pytest.raises(ValueError, match="kind must be one of int8, bfloat16"):
        _peak.dot_loop("int4", 1)


def test_tile_peaks_are_measured_where_the_process_has_amx():
    """Each iteration is four tile products of ones into four tiles: every sum of one gains
    64 (tdpbusd: 64 int8 products) or 32 (tdpbf16ps) an iteration."""
    from lstmx import _peak

    for kind, flag, depth in (("int8", "amx_int8", 64), ("bfloat16", "amx_bf16", 32)):
        assert _peak.tile_macs_per_iteration(kind) == 4 * 16 * 16 * depth
        if not amx_granted(flag):
            assert _peak.tile_instruction(kind) is None
            with pytest.raises(ValueError, match="this process has no AMX"):
                _peak.tile_loop(kind, 1)
            continue
        assert _peak.tile_instruction(kind) == ("tdpbusd" if kind == "int8" else "tdpbf16ps")
        assert _peak.tile_loop(kind, 1000) == depth * 1000
        with pytest.raises(ValueError, match="iterations must be >= 0"):
            _peak.tile_loop(kind, -1)
    with pytest.raises(ValueError, match="kind must be one of int8, bfloat16"):
        _peak.tile_loop("int4", 1)


def _check_structure(res, configs, impls):
    assert res["schema"] == _bench_run.SCHEMA
    assert set(res["configs"]) == set(configs)
    assert res["settings"]["threads"] == 2
    peak = res["peak"]["gflops"]["float32"]["2"]
    for cname in configs:
        for mode, timings in res["results"][cname].items():
            assert mode in ("forward", "train")
            flops = (configs[cname].forward_flops() if mode == "forward"
                     else configs[cname].train_flops())
            for impl, t in timings.items():
                assert len(t["samples_s"]) == res["settings"]["repeat"]
                assert t["spread"] >= 0
                assert t["median_s"] == pytest.approx(np.median(t["samples_s"]))
                rate = res["rates_gflops"][cname][mode][impl]
                assert rate == pytest.approx(flops / t["median_s"] / 1e9)
                assert res["peak_fraction"][cname][mode][impl] == pytest.approx(rate / peak)
            base = timings["lstmx"]
            assert set(res["ratios"][cname][mode]) == set(res["ratios_of_medians"][cname][mode])
            for impl, r in res["ratios"][cname][mode].items():
                assert impl in impls and impl != "lstmx"
                assert r == pytest.approx(np.median(np.divide(timings[impl]["samples_s"],
                                                              base["samples_s"])))
                assert res["ratios_of_medians"][cname][mode][impl] == pytest.approx(
                    timings[impl]["median_s"] / base["median_s"])
        for impl, err in res["agreement"][cname].items():
            assert err < 1e-5, (cname, impl)
        for mode, attempts in res["discarded"][cname].items():
            assert 1 <= len(attempts) <= res["settings"]["retries"]
            for attempt in attempts:
                assert set(attempt) <= set(res["results"][cname][mode])
                assert max(t["spread"] for t in attempt.values()) > _bench_timing.NOISY
    assert "targets" not in res  # only --check evaluates targets
    # What the run writes with --json is plain JSON and reads back the same.
    assert json.loads(json.dumps(_bench_run.jsonable(res))) == _bench_run.jsonable(res)


FAST_PEAK = dict(FAST, peak_time=0.002)


def test_run_without_torch_or_onnxruntime(monkeypatch):
    """Absent libraries: their columns read n/a; memory is measured in subprocesses."""
    monkeypatch.setitem(sys.modules, "torch", None)  # makes "import torch" fail
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    res = _bench_run.run_benchmarks(TINY, memory_config="S", **FAST_PEAK)
    _check_structure(res, TINY, _bench_impls.IMPLEMENTATIONS)
    for cname in TINY:
        assert set(res["unavailable"][cname]) == {"torch", "onnxruntime"}
        assert set(res["results"][cname]["forward"]) == {"lstmx", "reference", "lstmx-peephole"}
    mem = res["memory"]
    assert mem["config"] == "S" and set(mem) == {"config", "steps", "lstmx", "reference"}
    for impl in ("lstmx", "reference"):
        assert mem[impl]["growth_mib"] >= 0, mem[impl]
    report = _bench_report.format_report(res)
    assert "n/a: torch: torch does not import" in report
    s_forward = next(line for line in report.splitlines() if line.startswith("S       forward"))
    assert s_forward.split().count("n/a") == 4  # torch, onnxruntime times and ratios
    assert "FMA peak (" in report and "GEMM" not in report
    assert res["machine"]["kernel_variant"] in ("baseline", "avx2", "avx512")
    products = res["machine"]["quantized_products"]
    assert res["machine"]["teams_turned_off"] >= 0
    assert products == {"int8": _dispatch.quantized().INT8_PRODUCTS,
                        "bfloat16": _dispatch.quantized().BF16_PRODUCTS}
    assert f"(int8 on {products['int8']}, bfloat16 on {products['bfloat16']})" in report


def test_run_with_every_implementation():
    require("torch")
    require("onnxruntime")
    res = _bench_run.run_benchmarks(TINY, memory_config=None, **FAST_PEAK)
    _check_structure(res, TINY, _bench_impls.IMPLEMENTATIONS)
    assert set(res["results"]["S"]["forward"]) == set(_bench_impls.DEFAULT_IMPLS)
    assert set(res["results"]["S"]["train"]) == {"lstmx", "reference", "torch", "lstmx-peephole"}
    assert res["machine"]["torch_threads"] == 2
    assert all(p["num_threads"] <= 2 for p in res["machine"]["threadpools"])
    assert res["memory"] is None and res["sweep"] is None
    report = _bench_report.format_report(res)
    assert "rate and fraction of the FMA peak" in report and "targets:" not in report


def test_report_marks_noisy_ratios_and_omits_unknown_versions():
    timings = {"lstmx": {"median_s": 1.0, "spread": 0.1},
               "torch": {"median_s": 2.0, "spread": 0.4},
               "reference": {"median_s": 3.0, "spread": 0.1}}
    res = {"settings": {"impls": ["lstmx", "reference", "torch"], "threads": 2, "repeat": 5,
                        "max_time_s": 1.0, "warmup": 1, "dtype": "float32"},
           "machine": {"cpu": "CPU X", "cpu_count": 2, "platform": "p", "versions": {},
                       "torch_threads": 2, "kernel_variant": "avx2",
                       "threadpools": [{"user_api": "openmp", "internal_api": "openmp",
                                        "version": None, "num_threads": 2}]},
           "configs": {"S": dataclasses.asdict(TINY["S"])},
           "results": {"S": {"forward": timings}},
           "ratios": {"S": {"forward": {"torch": 2.0, "reference": 3.0}}},
           "agreement": {}, "unavailable": {}, "peak": None}
    report = _bench_report.format_report(res)
    line = next(line for line in report.splitlines() if line.startswith("S       forward"))
    assert line.split()[-2:] == ["3.00x", "2.00x*"]  # reference quiet, torch noisy
    assert "* = noisy" in report
    assert "openmp (openmp, 2 threads)" in report and "None" not in report
    assert "lstmx kernels: avx2" in report
    assert "plan costs" not in report  # none measured
    res["machine"]["plan_costs"] = {"1": {"fma_s": 2e-11, "barrier_s": 0.0},
                                    "2": {"fma_s": 2e-11, "barrier_s": 1e-6}}
    report = _bench_report.format_report(res)
    assert "one thread 20 ps a multiply-add; 2 threads: 20 ps a thread, barrier 1.0 us" in report
    assert "teams turned off" not in report
    res["machine"]["teams_turned_off"] = 3
    assert "teams turned off 3 times" in _bench_report.format_report(res)


def test_sweep_grid():
    shapes = _bench_sweep.sweep_configs()
    assert shapes[0][0] == "base"
    base = _bench_sweep.SWEEP_BASE
    # One axis at a time: each other shape differs from the base in exactly its axis.
    for axis, value, c in shapes[1:]:
        shape = {"T": c.T, "B": c.B, "I": c.I, "H": c.H}
        assert shape == dict(base, **{axis: value})
    count = sum(len([v for v in vs if v != base[a]])
                for a, vs in _bench_sweep.SWEEP_AXES.items())
    assert len(shapes) == 1 + count == len({c.name for _, _, c in shapes})
    assert _bench_sweep.SWEEP_AXES == {"I": (1, 3, 31, 32, 33, 100),
                                       "H": (1, 17, 32, 50, 63, 100, 257, 300),
                                       "B": (1, 3, 8, 33), "T": (1, 7, 200)}
    assert _bench_sweep.parse_grid("I=1,33 H=17", {"I": (5,), "T": (2,)}) == {
        "I": (1, 33), "H": (17,), "T": (2,)}
    for bad in ("X=1", "I=0", "I=a", "I"):
        with pytest.raises(ValueError):
            _bench_sweep.parse_grid(bad, {})


def test_sweep_against_torch_and_baseline():
    """A three-shape sweep, with the baseline kernels swapped in for their samples."""
    require("torch")
    sweep = _bench_sweep.run_sweep(**TINY_SWEEP, **FAST)
    assert sweep["baseline_variant"] == "baseline", sweep.get("baseline_error")
    assert [(r["axis"], r["value"], r["config"]["name"]) for r in sweep["rows"]] == [
        ("base", None, "T2-B1-I2-H3"), ("I", 1, "T2-B1-I1-H3"), ("H", 4, "T2-B1-I2-H4")]
    for row in sweep["rows"]:
        for mode in ("forward", "train"):
            t = row["timings"][mode]
            assert set(t) == {"lstmx", "torch", "lstmx-baseline"}
            for other in ("torch", "lstmx-baseline"):
                assert row["ratios"][mode][other] == pytest.approx(np.median(
                    np.divide(t[other]["samples_s"], t["lstmx"]["samples_s"])))
    text = _bench_report.format_sweep(sweep)
    assert "T2-B1-I1-H3" in text and "worst: forward vs torch" in text


def test_sweep_reports_a_failed_baseline(monkeypatch):
    def unavailable(impl, *args, **kwargs):
        if impl == _bench_sweep.BASELINE:
            raise _bench_impls.UnavailableError("boom")
        return build_impl(impl, *args, **kwargs)

    build_impl = _bench_sweep.build_impl
    monkeypatch.setattr(_bench_sweep, "build_impl", unavailable)
    sweep = _bench_sweep.run_sweep(impls=("lstmx",), **TINY_SWEEP, **FAST)
    assert sweep["baseline_error"] == "boom"
    assert all(set(r["timings"]["forward"]) == {"lstmx"} for r in sweep["rows"])
    assert "baseline kernels: n/a (boom)" in _bench_report.format_sweep(sweep)


def test_cli_writes_json_and_checks(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(_bench_impls.ALL_CONFIGS, "S", TINY["S"])  # seconds, not a minute
    out = tmp_path / "bench.json"
    code = cli(["bench", "--quick", "--configs", "S", "--impls", "lstmx,reference",
                "--repeat", "2", "--retries", "0", "--no-memory", "--no-peak", "--json", str(out),
                "--check", str(TARGETS)])
    printed = capsys.readouterr().out
    assert "lstmx bench" in printed and "targets:" in printed and str(out) in printed
    res = json.loads(out.read_text())
    assert res["schema"] == _bench_run.SCHEMA and list(res["configs"]) == ["S"]
    assert res["settings"]["repeat"] == 2 and res["peak"] is None
    assert set(res["results"]["S"]["forward"]) == {"lstmx", "reference"}
    # Only the targets of what was asked for (S, the reference): no n/a rows for the rest.
    assert [t["name"] for t in res["targets"]] == ["training vs reference, S"]
    failed = res["targets"][0]["status"] == "FAIL"
    assert code == (1 if failed else 0)
    # The offline check of the saved result agrees with the run's.
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "check_targets.py"),
                           str(out)], capture_output=True, text=True,
                          env=_bench_memory.child_env())
    assert proc.returncode == code, proc.stderr
    assert "training vs reference, S" in proc.stdout


def test_cli_check_exits_1_on_a_missed_target(tmp_path, capsys):
    impossible = tmp_path / "targets.json"
    impossible.write_text(json.dumps({"schema": _bench_targets.TARGETS_SCHEMA, "targets": [
        {"name": "impossible", "metric": "ratio", "mode": "forward", "impl": "reference",
         "configs": ["cell"], ">=": 1e9}]}))
    assert cli(["bench", "--configs", "cell", "--impls", "lstmx,reference", "--repeat", "2",
                "--retries", "0", "--no-memory", "--no-peak", "--quick",
                "--check", str(impossible)]) == 1
    assert "FAIL  impossible, cell" in capsys.readouterr().out


def test_cli_sweep(monkeypatch, capsys):
    """--sweep alone (no configurations) reaches run_sweep with the parsed grid."""
    seen = {}

    def fake_sweep(**kwargs):
        seen.update(kwargs)
        return {"base": kwargs["base"], "axes": kwargs["axes"], "variant": "avx2", "rows": []}
    monkeypatch.setattr(_bench_run, "run_sweep", fake_sweep)
    assert cli(["bench", "--configs", "", "--sweep", "--sweep-axes", "I=1,33",
                "--sweep-base", "T=7 B=3 I=32 H=17", "--no-baseline", "--no-peak"]) == 0
    assert seen["base"] == {"T": 7, "B": 3, "I": 32, "H": 17}
    assert seen["axes"]["I"] == (1, 33) and seen["axes"]["H"] == _bench_sweep.SWEEP_AXES["H"]
    assert seen["baseline"] is False
    assert "shape sweep around T=7 B=3 I=32 H=17" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--sweep-base takes one value"):
        cli(["bench", "--sweep", "--sweep-base", "T=1,2"])
    with pytest.raises(SystemExit, match="--sweep-axes"):
        cli(["bench", "--sweep", "--sweep-axes", "Q=1"])


@pytest.mark.parametrize("argv", [["--help"], ["check", "--help"], ["bench", "--help"]])
def test_cli_help(argv, capsys):
    # argparse formats help strings with %: a literal one must be written %%.
    with pytest.raises(SystemExit) as exit_:
        cli(argv)
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: python -m lstmx" in out
    assert "``" not in out  # plain text, not reST markup


def test_cli_rejects_unknown_config():
    with pytest.raises(SystemExit, match="--configs must name"):
        cli(["bench", "--configs", "XXL"])
    with pytest.raises(SystemExit, match="none only with --sweep"):
        cli(["bench", "--configs", ""])


def test_check_names_its_kernel_variant_and_threads(monkeypatch, capsys):
    from lstmx import _check, _dispatch

    monkeypatch.setattr(_check, "CASES", [("tiny", dict(input_size=3, hidden_size=4), 3, 2)])
    monkeypatch.setattr(_check.time, "sleep", lambda s: None)
    assert cli(["check", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert f"kernel variant: {_dispatch.variant}" in out
    assert "threads: " in out and "OK: errors at float precision" in out
