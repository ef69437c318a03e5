"""The plan: when the threaded drivers take a team, from costs measured once per process, and
how a plan is shown (``LayerForward.describe``, ``python -m lstmx plan``).

A measured choice may change speed, never a bit: the results under a plan that always takes a
team and one that never does are compared bit for bit.
"""
import time

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from threadpoolctl import threadpool_limits

import lstmx
from lstmx import _dispatch, _engine
from lstmx.__main__ import main as cli
from lstmx._cpu import l1d_cache_bytes, l2_cache_bytes
from lstmx._plan_report import describe_plan, format_plan

kernels = _dispatch.kernels
THREADED = [v for v in _dispatch.available() if v != "baseline"]  # the variants with teams


@pytest.fixture
def pinned():
    """Pin the plan's costs for a test, and measure afresh after it."""
    yield kernels.set_plan_costs
    kernels.forget_plan_costs()


def costs(fma, barrier, teams=range(1, 9)):
    return {n: {"barrier_s": 0.0 if n == 1 else barrier, "fma_s": fma(n)} for n in teams}


def test_team_pays_when_its_barrier_is_cheap(pinned):
    pinned(costs(lambda n: 1e-11, 1e-6))
    work = 10 ** 6  # 10 us on one thread: 5 us + 1 us on two
    assert kernels.plan_team(work, 2) == 2
    assert kernels.plan_team(work, 4) == 4
    assert kernels.plan_team(work, 3) == 3  # teams 2 and then the available 3
    assert kernels.plan_team(work, 1) == 1


def test_one_thread_when_a_barrier_costs_more_than_it_saves(pinned):
    pinned(costs(lambda n: 1e-11, 1e-5))
    assert kernels.plan_team(10 ** 6, 2) == 1  # 10 us alone, 5 + 10 us on two
    assert kernels.plan_team(10 ** 8, 2) == 2  # 1 ms alone, 0.5 ms + 10 us on two


def test_one_thread_when_a_team_multiplies_no_faster(pinned):
    # Two SMT siblings (or two vCPUs of one core): each multiplies at half speed at once.
    pinned(costs(lambda n: 1e-11 * n, 1e-7))
    assert kernels.plan_team(10 ** 8, 2) == 1
    # A team must save a margin, not break even within noise.
    pinned(costs(lambda n: 1e-11 * (1.75 if n > 1 else 1), 0.0))
    assert kernels.plan_team(10 ** 8, 2) == 1
    pinned(costs(lambda n: 1e-11 * (1.5 if n > 1 else 1), 0.0))
    assert kernels.plan_team(10 ** 8, 2) == 2


def test_float64_steps_cost_twice_and_split_sooner(pinned):
    pinned(costs(lambda n: 1e-11, 4e-6))
    work = 10 ** 6  # float32: 10 us alone, 5 + 4 us on two (0.9: not enough); float64 20 vs 14
    assert kernels.plan_team(work, 2, False) == 1
    assert kernels.plan_team(work, 2, True) == 2


def test_tiny_steps_stay_on_one_thread_without_measuring(pinned):
    pinned({})
    assert kernels.plan_team(1000, 2) == 1
    assert kernels.plan_costs() == {}


def test_costs_are_measured_once_and_reported(pinned):
    pinned({})
    with threadpool_limits(2):
        team = kernels.plan_team(10 ** 7, 2)
    measured = kernels.plan_costs()
    assert team in (1, 2) and set(measured) == {1, 2}
    assert measured[1]["fma_s"] > 0 and measured[2]["fma_s"] > 0
    assert measured[2]["barrier_s"] > 0
    kernels.plan_team(10 ** 7, 2)
    assert kernels.plan_costs() == measured  # not measured again


@pytest.fixture
def retry_at_once():
    """Costs under which a team lost are measured again at the next plan."""
    previous = kernels.set_plan_retry(0.0)
    yield
    kernels.set_plan_retry(previous)
    kernels.forget_plan_costs()


# Costs under which a team of two loses at any work: each thread multiplies at half speed.
LOSING = costs(lambda n: 1e-3 * n, 1e-3, teams=(1, 2))


def test_costs_under_which_a_team_lost_are_measured_again(retry_at_once):
    # Measured in a burst of other work, such costs would keep the process on one thread.
    kernels.set_plan_costs(LOSING, pin=False)
    assert kernels.plan_team(10 ** 7, 2) == 1  # from the costs given
    assert kernels.plan_costs() == LOSING
    with threadpool_limits(2):
        kernels.plan_team(10 ** 7, 2)  # measures afresh: a real multiply-add is not 1 ms
    assert kernels.plan_costs()[1]["fma_s"] < 1e-6


def test_pinned_costs_are_never_measured_again(retry_at_once):
    kernels.set_plan_costs(LOSING)
    assert kernels.plan_team(10 ** 7, 2) == 1
    assert kernels.plan_team(10 ** 7, 2) == 1
    assert kernels.plan_costs() == LOSING


# Measured costs (not pinned) under which a team of two pays at 10**7 multiply-adds a step.
PAYING = costs(lambda n: 1e-11, 1e-7, teams=(1, 2))


@pytest.fixture
def watched():
    """Measured (unpinned) costs under which a team pays; forgotten afterwards."""
    kernels.set_plan_costs(PAYING, pin=False)
    yield
    kernels.forget_plan_costs()


def test_a_team_that_waits_most_of_a_call_yields_to_one_thread(watched):
    # The machine's other work took a core from the team: its threads waited 1.6 of their
    # 2 x 1 s, and the call took longer than its multiply-adds on one thread (10**10 at
    # 1e-11 s: 0.1 s). Teams (of units and of rows) are off for 4 times the call's time.
    work = 10 ** 7
    assert kernels.plan_team(work, 2) == 2
    off, times = kernels.teams_off()
    kernels.watch_team(2, 1.0, 1.6, 1e10)
    assert kernels.teams_off() == (True, times + 1)
    assert kernels.plan_team(work, 2) == 1
    with threadpool_limits(2):
        call = kernels.LayerForward(x=np.zeros((400 * 8, 64), np.float32),
                                    W=np.zeros((512, 64), np.float32),
                                    U=np.zeros((512, 128), np.float32),
                                    h=np.zeros((8, 128), np.float32),
                                    c=np.zeros((8, 128), np.float32),
                                    y=np.zeros((400, 8, 128), np.float32))
    assert call.describe()["threads"] == 1
    assert kernels.plan_costs() == PAYING  # the costs stay: the team is tried again


def test_teams_come_back_and_each_slow_call_keeps_them_off_longer(watched):
    # Periods of a second or two, so that a late wake-up of the test cannot flip a check.
    kernels.watch_team(2, 0.25, 0.4, 1e6)  # off for 4 x 0.25 s
    assert kernels.teams_off()[0] and kernels.plan_team(10 ** 7, 2) == 1
    time.sleep(1.2)
    assert not kernels.teams_off()[0] and kernels.plan_team(10 ** 7, 2) == 2
    kernels.watch_team(2, 0.25, 0.4, 1e6)  # slow again at once: off for 8 x 0.25 s
    time.sleep(1.2)
    assert kernels.teams_off()[0]
    time.sleep(1.0)
    assert not kernels.teams_off()[0]
    kernels.watch_team(2, 0.25, 0.01, 1e6)  # a call that hardly waited: back to 4 x
    kernels.watch_team(2, 0.25, 0.4, 1e6)
    time.sleep(1.2)
    assert not kernels.teams_off()[0]


@pytest.mark.parametrize("team, seconds, waited, work", [
    (2, 1.0, 0.9, 1e10),    # waited less than half the team's time
    (2, 1.0, 1.6, 1e12),    # slower than one thread's products would be (10 s): still a gain
    (4, 1.0, 1.9, 1e10),    # a team of four that waited less than half its 4 s
    (1, 1.0, 0.9, 1e10)])   # one thread is no team
def test_a_team_that_still_gains_stays(watched, team, seconds, waited, work):
    off, times = kernels.teams_off()
    kernels.watch_team(team, seconds, waited, work)
    assert kernels.teams_off() == (False, times)
    assert kernels.plan_team(10 ** 7, 2) == 2


def test_pinned_costs_are_not_watched(pinned):
    pinned(PAYING)
    kernels.watch_team(2, 1.0, 1.6, 1e10)
    assert not kernels.teams_off()[0] and kernels.plan_team(10 ** 7, 2) == 2


@pytest.mark.parametrize("variant", THREADED)
def test_watched_team_calls_change_no_bit(variant, monkeypatch):
    # A team's calls, forward and backward, on units and on rows, run through the watch,
    # which may put the next calls on one thread (on a busy machine): the same bits.
    k = _dispatch.load(variant)
    monkeypatch.setattr(_engine, "_kernels", k)
    k.set_plan_costs(costs(lambda n: 1e-11, 1e-7, teams=(1, 2)), pin=False, call_work=0)
    try:
        for B, H in ((8, 64), (32, 256)):  # a team of rows, of units
            m = lstmx.LSTM(16, H, seed=0)
            x = np.random.default_rng(0).standard_normal((30, B, 16)).astype(np.float32)
            with threadpool_limits(2):
                y, _, cache = m.forward_train(x)
                m.backward(cache, np.ones_like(y))
                expected = m(x)[0]
                for _ in range(3):
                    assert_array_equal(m(x)[0], expected)
    finally:
        k.forget_plan_costs()


def test_set_plan_retry_refuses_a_negative_time():
    with pytest.raises(ValueError, match="set_plan_retry: seconds must be >= 0; got -1.0"):
        kernels.set_plan_retry(-1.0)


@pytest.mark.parametrize("bad", [{0: {"barrier_s": 0.0, "fma_s": 1e-11}},
                                 {2: {"barrier_s": -1.0, "fma_s": 1e-11}},
                                 {2: {"barrier_s": 0.0, "fma_s": 0.0}},
                                 {99: {"barrier_s": 0.0, "fma_s": 1e-11}}])
def test_set_plan_costs_refuses_what_is_not_a_cost(bad, pinned):
    with pytest.raises(ValueError, match="set_plan_costs"):
        pinned(bad)


@pytest.mark.parametrize("variant", THREADED)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_plan_changes_no_bit(variant, dtype, monkeypatch):
    k = _dispatch.load(variant)
    monkeypatch.setattr(_engine, "_kernels", k)
    m = lstmx.LSTM(20, 70, bidirectional=True, dtype=dtype, seed=3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 24, 20)).astype(dtype)
    results = []
    try:
        # B = 24, 3 or 4 tiles of rows: a team of 2 splits them; 7 threads (less than a tile
        # and less than four rows each) split units (as many threads as strips of them) if
        # every team pays, or stay one (a team of rows of one) if none does.
        for barrier, threads, split, team in ((0.0, 2, "rows", 2), (0.0, 7, "units", None),
                                              (1.0, 7, "rows", 1)):
            k.set_plan_costs(costs(lambda n: 1e-10, barrier), call_work=0)
            with threadpool_limits(threads):
                call = k.LayerForward(x=x.reshape(-1, 20), W=m.weight_ih_l0, U=m.weight_hh_l0,
                                      h=np.zeros((24, 70), dtype), c=np.zeros((24, 70), dtype),
                                      y=np.zeros((5, 24, 70), dtype))
                plan = call.describe()
                assert plan["split"] == split
                assert plan["threads"] == team if team else plan["threads"] > 1
                y, (h, c), cache = m.forward_train(x)
                dx, _, grads = m.backward(cache, np.cos(np.asarray(y)))
            results.append([np.array(y), h, c, dx] + [grads[n] for n in sorted(grads)])
    finally:
        k.forget_plan_costs()
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            assert_array_equal(a, b)


@pytest.mark.parametrize("variant", THREADED)
def test_small_batches_split_rows_where_u_stays_in_l2(variant):
    # Less than a tile of rows each (tiles of 8 rows with AVX-512, 6 with AVX2): two threads
    # split the batch where U (H=64: 64 KiB packed) fits half of L2 and each gets four rows,
    # or two or three of a batch smaller than a tile; units where U does not fit (H=512:
    # 4 MiB) or where a team of units gives each thread a whole tile (B=6 on AVX2).
    k = _dispatch.load(variant)
    tile = 8 if variant == "avx512" else 6
    k.set_plan_costs(costs(lambda n: 1e-10, 0.0), call_work=0)

    def split(B, H):
        with threadpool_limits(2):
            call = k.LayerForward(x=np.zeros((10 * B, 64), np.float32),
                                  W=np.zeros((4 * H, 64), np.float32),
                                  U=np.zeros((4 * H, H), np.float32),
                                  h=np.zeros((B, H), np.float32), c=np.zeros((B, H), np.float32),
                                  y=np.zeros((10, B, H), np.float32))
            return call.describe()["split"]
    try:
        assert split(4, 64) == "rows"
        assert split(8, 64) == "rows"
        assert split(6, 64) == ("rows" if tile > 6 else "units")
        assert split(2 * tile, 64) == "rows"                 # a tile each
        if 4 * (4 * 512) * 512 > l2_cache_bytes() // 2:
            assert split(4, 512) == "units"
    finally:
        k.forget_plan_costs()


def test_one_strip_of_units_still_gets_a_team_of_rows(pinned):
    # H = 32 is one strip of units, so no team of units can form; a batch of 64 rows still
    # splits between two threads by rows. One thread is a team of rows of one only where
    # neither team forms (a short call, or two threads that do not pay).
    pinned(costs(lambda n: 1e-10, 0.0), call_work=0)
    plan = describe_plan(T=200, B=64, I=32, H=32, threads=2)
    if "avx" not in plan["variant"]:
        assert plan["plans"]["forward (inference)"]["driver"] == "serial"
        return
    for name in ("forward (inference)", "forward (training)"):
        assert plan["plans"][name]["split"] == "rows"
        assert plan["plans"][name]["threads"] == 2
    one = describe_plan(T=200, B=64, I=32, H=32, threads=1)
    assert one["plans"]["forward (inference)"]["split"] == "rows"
    assert one["plans"]["forward (inference)"]["threads"] == 1


def test_describe_names_the_driver_and_products(pinned):
    pinned(costs(lambda n: 1e-10, 0.0))
    small = describe_plan(T=100, B=1, I=32, H=32, threads=2)
    assert small["plans"]["forward (inference)"]["driver"] == "serial"
    assert small["plans"]["forward (inference)"]["recurrent"] == "gemm_small"
    proj = describe_plan(T=10, B=32, I=16, H=64, proj_size=8, threads=2)
    assert proj["plans"]["forward (training)"]["projection"] in ("tiles", "BLAS")
    assert proj["plans"]["backward"]["driver"] == "serial"
    big = describe_plan(T=4, B=40, I=64, H=128, threads=2)
    for name in ("forward (inference)", "forward (training)", "backward"):
        plan = big["plans"][name]
        if "avx" in big["variant"]:
            assert plan["driver"] == "threaded" and plan["threads"] == 2
        else:
            assert plan["driver"] == "serial" and plan["threads"] == 1
    text = format_plan(big)
    assert "T=4 B=40 I=64 H=128" in text and "backward" in text


def test_one_step_runs_on_the_serial_driver(pinned):
    # One step packs W and U for one use: the serial driver's BLAS products, as the
    # baseline variant, whatever the step's size.
    pinned(costs(lambda n: 1e-10, 0.0), call_work=0)
    plan = describe_plan(T=1, B=64, I=256, H=1024, threads=2)
    for name in ("forward (inference)", "forward (training)", "backward"):
        assert plan["plans"][name]["driver"] == "serial"
    if "avx" in plan["variant"]:
        assert describe_plan(T=2, B=64, I=256, H=1024, threads=2)["plans"][
            "forward (inference)"]["driver"] == "threaded"


def test_a_short_call_runs_alone(pinned):
    # A team also costs once a call (waking it, each thread packing its strips of W and U):
    # a call of fewer multiply-adds than the plan's call work (2**23) runs on one thread,
    # however cheap the steps' costs make a team; call_work=0 lifts the rule.
    pinned(costs(lambda n: 1e-10, 0.0))
    short = describe_plan(T=2, B=8, I=32, H=100, threads=2)  # 844,800 multiply-adds
    long = describe_plan(T=200, B=8, I=32, H=100, threads=2)
    teams = "avx" in short["variant"]  # the baseline variant runs every call alone
    for name in ("forward (inference)", "forward (training)", "backward"):
        assert short["plans"][name]["threads"] == 1
        assert long["plans"][name]["threads"] == (2 if teams else 1)
    pinned(costs(lambda n: 1e-10, 0.0), call_work=0)
    short = describe_plan(T=2, B=8, I=32, H=100, threads=2)
    for name in ("forward (inference)", "forward (training)", "backward"):
        assert short["plans"][name]["threads"] == (2 if teams else 1)
    with pytest.raises(ValueError, match="call_work"):
        kernels.set_plan_costs(costs(lambda n: 1e-10, 0.0), call_work=-1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_chunks_fill_half_of_l2(dtype):
    l2 = l2_cache_bytes()
    itemsize = np.dtype(dtype).itemsize
    # A step whose z (B x 4H) fits in half of L2: a chunk is as many steps as fit there.
    B, H = 8, 64
    fit = (l2 // 2) // (B * 4 * H * itemsize)
    plan = describe_plan(T=2 * fit + 1, B=B, I=3, H=H, dtype=dtype, threads=1)
    assert plan["l2_bytes"] == l2
    assert plan["plans"]["forward (inference)"]["chunk_steps"] == fit
    assert plan["plans"]["forward (training)"]["chunk_steps"] == fit  # into every step's z
    # A step larger than half of L2: chunks of 2**20 elements of z, which read W for many rows.
    B, H = 4 * l2 // (4 * 32 * itemsize), 32
    plan = describe_plan(T=8, B=B, I=1, H=H, dtype=dtype, threads=1)
    want = min(8, max(1, 2 ** 20 // (B * 4 * H)))
    assert want < 8 and plan["plans"]["forward (inference)"]["chunk_steps"] == want
    assert plan["plans"]["forward (training)"]["chunk_steps"] == 8  # W read once


def test_l2_cache_bytes_is_a_size():
    n = l2_cache_bytes()
    assert isinstance(n, int) and 64 * 1024 <= n <= 1 << 30


def test_cli_plan(capsys):
    assert cli(["plan", "-T", "20", "-B", "8", "-I", "3", "-H", "40", "--threads", "1"]) == 0
    assert "lstmx plan: T=20 B=8 I=3 H=40" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli(["plan", "-T", "0", "-B", "8", "-I", "3", "-H", "40"])
    assert "T must be" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_plan_reports_the_depth_the_l1_chose(dtype):
    assert isinstance(l1d_cache_bytes(), int) and 8 * 1024 <= l1d_cache_bytes() <= 1 << 24
    plan = describe_plan(T=2, B=8, I=3, H=64, dtype=dtype, threads=1)
    assert plan["l1d_bytes"] == l1d_cache_bytes()
    # Doubles always sum blocks of 512; floats as the kernel module chose from L1.
    want = kernels.depth_for_l1(l1d_cache_bytes()) if dtype == np.float32 else 512
    assert plan["depth_block"] == want
    where = f" in products of k >= {2 * want}" if want < 512 else ""
    assert f"(the tiles sum k in blocks of {want}{where})" in format_plan(plan)
