"""The benchmark harness (``python -m lstmx bench``, shared with asv) on tiny sizes.

These check the machinery, not the speed: every implementation computes the same thing from
the same weights, the JSON has its documented structure, ratios and targets are computed
right, and absent libraries show as "n/a". A few seconds, most of it importing torch.
"""
import json
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose

from _helpers import require
from lstmx import _bench
from lstmx.__main__ import main as cli

TINY = {
    "S": _bench.BenchConfig("S", T=4, B=2, I=3, H=5),
    "M-bi2": _bench.BenchConfig("M-bi2", T=3, B=2, I=3, H=4, num_layers=2,
                                bidirectional=True),
    "cell": _bench.BenchConfig("cell", T=1, B=2, I=3, H=4, cell=True),
}
FAST = dict(repeat=2, warmup=1, min_time=0.0, warm_time=0.0, gap=0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", list(TINY))
@pytest.mark.parametrize("impl", ["reference", "torch", "onnxruntime"])
def test_implementations_compute_the_same(impl, config, dtype):
    """Same weights, same x, dy: outputs and gradients agree with lstmx's."""
    require({"reference": "numpy", "torch": "torch", "onnxruntime": "onnxruntime"}[impl])
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-12)
    ours = _bench.build_impl("lstmx", TINY[config], dtype)
    try:
        other = _bench.build_impl(impl, TINY[config], dtype)
    except _bench.UnavailableError as err:
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
    ort = _bench.build_impl("onnxruntime", TINY["S"], np.float32)
    assert not ort.trainable
    with pytest.raises(NotImplementedError, match="no training"):
        ort.train()


def test_build_impl_rejects_unknown_names():
    with pytest.raises(ValueError, match="impl must be one of"):
        _bench.build_impl("tensorflow", "S")
    with pytest.raises(ValueError, match="config must be one of"):
        _bench.build_impl("lstmx", "XL")


def test_forward_flops_follow_lstm_md():
    # 2 T B 4H (I + H) per layer and direction; layer 1 of a bidirectional stack reads 2H.
    assert _bench.CONFIGS["L"].forward_flops() == 2 * 100 * 64 * 4 * 512 * (512 + 512)
    c = TINY["M-bi2"]
    per_dir = [2 * 3 * 2 * 16 * (3 + 4), 2 * 3 * 2 * 16 * (8 + 4)]
    assert c.forward_flops() == 2 * sum(per_dir)


def test_measure_keeps_repeat_samples_and_interleaves():
    calls = []
    ops = {name: ((lambda name=name: calls.append(name)), _bench.contextlib.nullcontext)
           for name in "abc"}
    timings = _bench.measure(ops, repeat=4, warmup=1, min_time=0.0, warm_time=0.0, gap=0.0)
    assert set(timings) == set("abc")
    for t in timings.values():
        assert len(t.samples) == 4 and t.number == 1
        assert t.median == np.median(t.samples)
    # After the warm-up (2 calls each), round r starts with the r-th name: round-robin.
    rounds = [calls[6 + 3 * r:6 + 3 * r + 3] for r in range(5)]
    assert [r[0] for r in rounds] == list("abcab")
    assert all(sorted(r) == list("abc") for r in rounds)


def test_measure_time_budget_keeps_min_repeat():
    ops = {"a": (lambda: None, _bench.contextlib.nullcontext)}
    timings = _bench.measure(ops, repeat=50, warmup=0, min_time=0.0, warm_time=0.0, gap=0.0,
                             max_time=0.0, min_repeat=3)
    assert len(timings["a"].samples) == 3


def _scripted_measure(monkeypatch, spreads):
    """Make ``measure`` return, call after call, timings with these spreads (each a dict
    name -> interquartile range / median, the median being 1)."""
    script = iter(spreads)

    def fake(ops, **kwargs):
        return {name: _bench.Timing([1 - s / 2, 1 - s / 2, 1, 1 + s / 2, 1 + s / 2], 1)
                for name, s in next(script).items()}
    monkeypatch.setattr(_bench, "measure", fake)


def test_measure_settled_measures_noisy_timings_again(monkeypatch):
    _scripted_measure(monkeypatch, [{"a": 0.1, "b": 0.5}, {"a": 0.3, "b": 0.1},
                                    {"a": 0.2, "b": 0.05}, {"a": 0.0, "b": 0.0}])
    retried = []
    timings, discarded = _bench.measure_settled({}, retries=5, on_retry=retried.append)
    # The third attempt is the first with nothing noisy; the fourth is never measured.
    assert timings["a"].spread == pytest.approx(0.2)
    assert [round(d["b"].spread, 3) for d in discarded] == [0.5, 0.1]
    assert [set(r) for r in retried] == [{"b"}, {"a"}]


def test_measure_settled_keeps_the_least_noisy_attempt(monkeypatch):
    _scripted_measure(monkeypatch, [{"a": 0.3, "b": 0.9}, {"a": 0.4, "b": 0.1},
                                    {"a": 0.6, "b": 0.0}])
    timings, discarded = _bench.measure_settled({}, retries=2)
    assert timings["a"].spread == pytest.approx(0.4)  # the attempt whose worst is least bad
    assert len(discarded) == 2
    _scripted_measure(monkeypatch, [{"a": 0.9}])
    timings, discarded = _bench.measure_settled({}, retries=0)
    assert timings["a"].spread == pytest.approx(0.9) and discarded == []
    # Only the watched timings decide.
    _scripted_measure(monkeypatch, [{"a": 0.1, "gemm": 0.9}])
    timings, discarded = _bench.measure_settled({}, retries=2, watch=["a"])
    assert timings["gemm"].spread == pytest.approx(0.9) and discarded == []


def test_ratios_pair_the_samples_of_each_round():
    timings = {"lstmx": _bench.Timing([1.0, 3.0, 2.0], 1),
               "torch": _bench.Timing([5.0, 6.0, 100.0], 1)}
    # Rounds: 5/1, 6/3, 100/2.
    assert _bench.ratios(timings) == {"torch": 5.0}
    assert _bench.ratios_of_medians(timings) == {"torch": 3.0}
    assert _bench.ratios({"torch": timings["torch"]}) == {}
    assert _bench.ratios_of_medians({"torch": timings["torch"]}) == {}
    assert timings["torch"].spread == pytest.approx((53.0 - 5.5) / 6.0)
    # torch 1.1x slower throughout; the machine at half speed in rounds 2 and 3 (both
    # samples), and lstmx alone hit in round 4: the ratio of medians reads torch as faster.
    machine = np.array([1.0, 1.0, 2.0, 2.0, 1.0])
    timings = {"lstmx": _bench.Timing(list(machine * [1, 1, 1, 1, 1.5]), 1),
               "torch": _bench.Timing(list(1.1 * machine), 1)}
    assert _bench.ratios(timings)["torch"] == pytest.approx(1.1)
    assert _bench.ratios_of_medians(timings)["torch"] == pytest.approx(1.1 / 1.5)
    with pytest.raises(ValueError, match="torch has 2, lstmx 5"):
        _bench.ratios({"lstmx": timings["lstmx"], "torch": _bench.Timing([1.0, 2.0], 1)})


def test_targets_pass_fail_and_missing():
    res = {
        "ratios": {"S": {"forward": {"torch": 2.0, "onnxruntime": 0.5},
                         "train": {"torch": 3.0, "reference": 9.99}},
                   "cell": {"forward": {"torch": 6.0}}},
        "results": {"cell": {"forward": {"lstmx": {"median_s": 3e-6}}}},
        "gemm": {"config": "L", "fraction": 0.8},
        "memory": {"config": "L", "lstmx": {"growth_mib": 100.0},
                   "torch": {"growth_mib": 300.0}},
    }
    rows = {t["name"]: t for t in _bench.evaluate_targets(res)}
    status = {name: t["status"] for name, t in rows.items()}
    assert status["forward vs torch, S"] == "PASS"
    assert status["forward vs onnxruntime, S"] == "FAIL"
    assert status["training vs torch, S"] == "PASS"  # 3.0 >= 3: the bound is inclusive
    assert status["training vs reference, S"] == "FAIL"
    assert status["forward vs torch, cell"] == "PASS"
    assert status["LSTMCell step vs torch.nn.LSTMCell"] == "PASS"
    assert rows["LSTMCell step time"]["measured"] == pytest.approx(3.0)
    assert status["LSTMCell step time"] == "PASS"
    assert status["L forward flop rate / sgemm rate"] == "FAIL"
    mem = rows["L training peak RSS growth, lstmx / torch"]
    assert mem["measured"] == pytest.approx(1 / 3) and mem["status"] == "PASS"
    assert status["forward vs torch, M"] == "n/a" and rows["forward vs torch, M"][
        "measured"] is None
    assert status["training vs reference, L"] == "n/a"


def _check_structure(res, configs, impls):
    assert res["schema"] == _bench.SCHEMA
    assert set(res["configs"]) == set(configs)
    assert res["settings"]["threads"] == 2
    for cname in configs:
        for mode, timings in res["results"][cname].items():
            assert mode in ("forward", "train")
            for impl, t in timings.items():
                assert len(t["samples_s"]) == res["settings"]["repeat"]
                assert t["spread"] >= 0
                assert t["median_s"] == pytest.approx(np.median(t["samples_s"]))
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
                assert set(attempt) <= set(res["results"][cname][mode]) | {"gemm"}
                assert max(t["spread"] for impl, t in attempt.items()
                           if impl != "gemm") > _bench.NOISY
    names = [t["name"] for t in res["targets"]]
    assert len(names) == len(set(names)) == 22
    assert {t["status"] for t in res["targets"]} <= {"PASS", "FAIL", "n/a"}
    # What the run writes with --json is plain JSON and reads back the same.
    assert json.loads(json.dumps(_bench._jsonable(res))) == _bench._jsonable(res)


def test_run_without_torch_or_onnxruntime(monkeypatch):
    """Absent libraries: their columns read n/a; memory is measured in subprocesses."""
    monkeypatch.setitem(sys.modules, "torch", None)  # makes "import torch" fail
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    res = _bench.run_benchmarks(TINY, memory_config="S", gemm_config="S", **FAST)
    _check_structure(res, TINY, _bench.IMPLEMENTATIONS)
    for cname in TINY:
        assert set(res["unavailable"][cname]) == {"torch", "onnxruntime"}
        assert set(res["results"][cname]["forward"]) == {"lstmx", "reference", "lstmx-peephole"}
    g = res["gemm"]
    assert g["shape_mkn"] == [4 * 2, 3, 4 * 5] and g["routine"] == "sgemm"
    assert g["fraction"] == pytest.approx(g["lstmx_gflops"] / g["gflops"])
    assert g["lstmx_gflops"] == pytest.approx(
        TINY["S"].forward_flops() / res["results"]["S"]["forward"]["lstmx"]["median_s"] / 1e9)
    mem = res["memory"]
    assert mem["config"] == "S" and set(mem) == {"config", "steps", "lstmx", "reference"}
    for impl in ("lstmx", "reference"):
        assert mem[impl]["growth_mib"] >= 0, mem[impl]
    report = _bench.format_report(res)
    assert "n/a: torch: torch does not import" in report
    s_forward = next(line for line in report.splitlines() if line.startswith("S       forward"))
    assert s_forward.split().count("n/a") == 4  # torch, onnxruntime times and ratios


def test_run_with_every_implementation():
    require("torch")
    require("onnxruntime")
    res = _bench.run_benchmarks(TINY, memory_config=None, gemm_config=None, **FAST)
    _check_structure(res, TINY, _bench.IMPLEMENTATIONS)
    assert set(res["results"]["S"]["forward"]) == set(_bench.IMPLEMENTATIONS)
    assert set(res["results"]["S"]["train"]) == {"lstmx", "reference", "torch", "lstmx-peephole"}
    assert res["machine"]["torch_threads"] == 2
    assert all(p["num_threads"] <= 2 for p in res["machine"]["threadpools"])
    assert res["gemm"] is None and res["memory"] is None
    report = _bench.format_report(res)
    assert "targets:" in report and "forward vs torch, S" in report


def test_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert cli(["bench", "--quick", "--configs", "cell", "--impls", "lstmx,reference",
                "--repeat", "2", "--no-memory", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "lstmx bench" in printed and "targets:" in printed and str(out) in printed
    res = json.loads(out.read_text())
    assert res["schema"] == _bench.SCHEMA and list(res["configs"]) == ["cell"]
    assert res["settings"]["repeat"] == 2
    assert set(res["results"]["cell"]["forward"]) == {"lstmx", "reference"}


@pytest.mark.parametrize("argv", [["--help"], ["check", "--help"], ["bench", "--help"]])
def test_cli_help(argv, capsys):
    # argparse formats help strings with %: a literal one must be written %%.
    with pytest.raises(SystemExit) as exit_:
        cli(argv)
    assert exit_.value.code == 0
    assert "usage: python -m lstmx" in capsys.readouterr().out


def test_cli_rejects_unknown_config():
    with pytest.raises(SystemExit, match="--configs must name"):
        cli(["bench", "--configs", "XXL"])
