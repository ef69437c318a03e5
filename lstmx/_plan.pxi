# When a second thread pays: the threaded drivers' team size, and whether it splits units or rows, from costs measured once per process.
#
# Included by _kernels.pyx (after _phases.pxi, before _contract.pxi). A step of the threaded
# drivers is a product of B * 4H * (I + H) multiply-adds split between the team, then one
# barrier. Whether a team of n beats one thread depends on the CPU and the machine (a barrier
# costs ~1 us between two idle cores, milliseconds between two vCPUs of a busy host, and two
# SMT siblings do not double the multiply-adds), so the costs are measured here, not assumed:
# the first time a shape could use a team, this times a barrier of that team and the tile
# kernel's multiply-adds on one thread and split across the team (~20 ms on an idle machine,
# a few hundred on a busy one; again after plan_retry_s if a team lost). The drivers' results
# do not depend on their team size (tests/test_determinism.py), so the measurements change
# speed, never a bit.

cdef enum:
    PLAN_MIN_WORK = 1 << 14  # multiply-adds a step below which one thread is never beaten
    PLAN_CALL_WORK = 1 << 23 # multiply-adds a call (all steps) below which it runs alone
    PLAN_TEAMS = 65          # team sizes remembered (0 .. 64)
    PLAN_ROUNDS = 10         # timed products; the fastest is kept
    PLAN_WARM = 100          # products before them, at most
    PLAN_PAIRS = 33          # pairs of barriers timed at most (the first wakes the team)
    PLAN_DEPTH = 256         # k of the timed tile-kernel product
    PLAN_STRIPS = 16         # strips of TILE_COLS columns in it, at least (2 per thread)

# The k of the timed product, read at run time: with k a constant, GCC vectorises the tile
# kernel across k instead of its columns, and the timing would be of another, slower loop.
cdef Py_ssize_t plan_depth = PLAN_DEPTH
# Seconds after which the barrier timing, and a product's warm-up, stop with what they have: on
# a busy machine each barrier can take a scheduler's time slice.
cdef double PLAN_BUDGET = 0.02
# A team is chosen when its predicted step is at most this fraction of one thread's: a
# prediction a few percent better is within the measurements' noise.
cdef double PLAN_GAIN = 0.85

# Per team size n (index n): seconds per barrier, and seconds per multiply-add of one thread
# of n splitting a product (n = 1: alone), float32; -1 until measured.
cdef double plan_barrier_s[PLAN_TEAMS]
cdef double plan_fma_s[PLAN_TEAMS]
# When a plan on measured costs last chose one thread over a team (-1: not since they were
# measured), and the seconds after which such costs are measured again: costs measured in a
# burst of the machine's other work would otherwise keep the process on one thread for good.
# Measuring again costs ~20 ms (idle) once in that many seconds, and only while a team loses.
cdef double plan_lost_at = -1
cdef double plan_retry_s = 10
# Costs given by set_plan_costs are kept as they are.
cdef bint plan_pinned = False
# Contention. Every step of a team of units waits at a barrier for its slowest thread, so
# when the machine's other work takes a core from the team (another process, a busy host),
# a call can take several times one thread's; the costs above, the fastest round of a burst
# of about 20 ms, do not see it (docs/performance.md, session 25). So the threaded drivers
# add up how long their threads waited (plan_watch_team): after a call whose threads waited
# more than PLAN_WAITING of their time and that took longer than its products would have
# on one thread, calls run on one thread for a while, then a team is
# tried again. The while is PLAN_OFF_CALLS times that call's time, doubled while the teams
# tried after it wait as much again (up to plan_retry_s): a burst of other work costs a few
# calls on one thread, a busy neighbour one slow call now and then. A team's call that does
# not wait so much starts it over.
cdef double PLAN_WAITING = 0.5
cdef double PLAN_OFF_CALLS = 4
cdef double plan_teams_off_until = -1
cdef double plan_off_calls = PLAN_OFF_CALLS
cdef Py_ssize_t plan_teams_turned_off = 0  # times in this process (tests, the bench)
# Multiply-adds a call (all its steps) below which it runs on one thread (Shapes.alone).
cdef Py_ssize_t plan_call_work = PLAN_CALL_WORK


cdef void reset_plan_costs() noexcept nogil:
    global plan_lost_at, plan_teams_off_until, plan_off_calls
    cdef int n
    for n in range(PLAN_TEAMS):
        plan_barrier_s[n] = -1
        plan_fma_s[n] = -1
    plan_lost_at = -1
    plan_teams_off_until = -1
    plan_off_calls = PLAN_OFF_CALLS


cdef void plan_watch_team(int team, double seconds, double waited, double work,
                          bint double) noexcept nogil:
    """After a call of ``work`` multiply-adds in all on a team of ``team`` threads that took
    ``seconds``, whose threads waited ``waited`` seconds in all (at barriers, and for each
    other at the end): if that is more than PLAN_WAITING of the team's time, and the call
    took longer than its multiply-adds would on one thread at the measured speed (when
    measured: a team whose threads wait that much can still beat one thread, where the
    cell is much of a step), teams off for plan_off_calls times ``seconds`` (at most
    plan_retry_s), and plan_off_calls doubled; else plan_off_calls back to PLAN_OFF_CALLS.
    Not under pinned costs, which fix the plan."""
    global plan_teams_off_until, plan_teams_turned_off, plan_off_calls
    if team < 2 or plan_pinned or not seconds > 0:
        return
    if (waited > PLAN_WAITING * team * seconds
            and (plan_fma_s[1] <= 0 or seconds > work * plan_fma_s[1] * (2 if double else 1))):
        plan_teams_off_until = clock_now() + min(plan_off_calls * seconds, plan_retry_s)
        plan_off_calls = min(2 * plan_off_calls, 1e9)
        plan_teams_turned_off += 1
    else:
        plan_off_calls = PLAN_OFF_CALLS


cdef void plan_watch_layer(int threads, double start, double waited, Py_ssize_t T,
                           Py_ssize_t B, Py_ssize_t I, Py_ssize_t H, double passes,
                           bint double) noexcept nogil:
    """plan_watch_team for a threaded driver's call on ``threads`` threads that began at
    ``start`` (clock_now): its multiply-adds are ``passes`` times a forward pass's,
    T B 4H (I + H) (backward: 2)."""
    if threads > 1:
        plan_watch_team(threads, clock_now() - start, waited,
                        passes * T * B * 4 * H * (I + H), double)


cdef inline double waited_barrier() noexcept nogil:
    """A barrier of the team; returns the seconds this thread waited at it (two reads of the
    clock), which the threaded drivers add up for the plan's watch on contention
    (plan_watch_team)."""
    cdef double t0 = clock_now()
    barrier()
    return clock_now() - t0


cdef inline void team_waits_clear(double *waits, double *ends) noexcept nogil:
    """Before a team's parallel region (waits and ends of PLAN_TEAMS): no thread has
    reported (ends[i] < 0)."""
    cdef int i
    for i in range(PLAN_TEAMS):
        waits[i] = 0
        ends[i] = -1


cdef inline void team_waits_mark(double *waits, double *ends, int part,
                                 double wait) noexcept nogil:
    """At the end of thread ``part``'s work: the seconds it waited at barriers, and when it
    finished."""
    if 0 <= part < PLAN_TEAMS:
        waits[part] = wait
        ends[part] = clock_now()


cdef inline double team_waits_total(const double *waits, const double *ends,
                                    int threads) noexcept nogil:
    """After the region: the seconds the team's threads waited in all, at barriers and, at
    the end, for the last of them to finish."""
    cdef int i
    cdef double last = -1, total = 0
    for i in range(min(threads, PLAN_TEAMS)):
        last = max(last, ends[i])
    for i in range(min(threads, PLAN_TEAMS)):
        if ends[i] >= 0:
            total += waits[i] + (last - ends[i])
    return total


cdef bint plan_teams_off() noexcept nogil:
    """Whether teams are off (plan_watch_team)."""
    return (not plan_pinned and plan_teams_off_until >= 0
            and clock_now() < plan_teams_off_until)

reset_plan_costs()


cdef double median_of(double *v, int n) noexcept nogil:
    """The median of v[:n] (sorts v in place; n is small)."""
    cdef int i, j
    cdef double t
    for i in range(1, n):
        t = v[i]
        j = i - 1
        while j >= 0 and v[j] > t:
            v[j + 1] = v[j]
            j -= 1
        v[j + 1] = t
    return v[n // 2]


cdef double min_of(const double *v, int n) noexcept nogil:
    cdef int i
    cdef double low = v[0]
    for i in range(1, n):
        low = min(low, v[i])
    return low


cdef double time_barriers(int team) noexcept nogil:
    """Seconds per barrier of a team of ``team`` threads: the median over up to PLAN_PAIRS
    pairs of barriers, after one that wakes the team, stopping after PLAN_BUDGET seconds (on
    a busy machine one barrier can take a scheduler's time slice)."""
    cdef double t[PLAN_PAIRS]
    cdef double shared[2]  # [0]: when the pair began; [1]: pairs timed once the budget is spent
    cdef double began = clock_now()
    cdef int r = 0
    shared[1] = 0
    with parallel(num_threads=team):
        for r in range(PLAN_PAIRS):
            if threadid() == 0:
                shared[0] = clock_now()
            barrier()
            barrier()
            if threadid() == 0:
                t[r] = (clock_now() - shared[0]) / 2
                if r == PLAN_PAIRS - 1 or (r >= 1 and clock_now() - began > PLAN_BUDGET):
                    shared[1] = r
            barrier()  # thread 0's decision is seen by all: they leave after the same pair
            if shared[1] > 0:
                break
    return median_of(t + 1, <int> shared[1])


cdef double time_product(int team, Py_ssize_t nstrips, const float *A, const float *Bp,
                         float *C) noexcept nogil:
    """Seconds a team of ``team`` takes to split a product on the tile kernel as the threaded
    drivers split theirs (strips of columns; ``nstrips`` of them), one barrier included: the
    fastest of PLAN_ROUNDS products of (TILE_ROWS * 4, plan_depth) x (plan_depth,
    nstrips * TILE_COLS), each from a barrier to a barrier, after up to PLAN_WARM (at most
    PLAN_BUDGET seconds) that wake the cores (a host may have descheduled an idle vCPU, and
    a core idles slower) and warm the caches. So what threads lose to each other (SMT
    siblings, vCPUs of one busy host, shared caches) is in it."""
    cdef Py_ssize_t m = TILE_ROWS * 4, width = nstrips * TILE_COLS, k = plan_depth
    cdef double t[PLAN_ROUNDS]
    cdef double shared[2]  # [0]: when the warm-up began; [1]: 1 once it is over
    cdef double start = 0
    cdef int r = 0, part = 0, timed = 0
    cdef bint warm = True
    shared[1] = 0
    with parallel(num_threads=team):
        part = threadid()
        timed = 0
        r = 0
        while timed < PLAN_ROUNDS:
            barrier()
            # Thread 0 writes shared[1] only between the second barrier and the next first
            # one: every thread reads the same value here.
            warm = shared[1] == 0
            if part == 0:
                start = clock_now()
                if r == 0:
                    shared[0] = start
            gemm_packed(m, k, A, k, Bp, 1, width, share(nstrips, part, team),
                        share(nstrips, part + 1, team), False, C, width, NULL)
            barrier()
            if part == 0:
                if not warm:
                    t[timed] = clock_now() - start
                elif r + 1 >= PLAN_WARM or clock_now() - shared[0] > PLAN_BUDGET:
                    shared[1] = 1
            if not warm:
                timed = timed + 1
            r = r + 1
    # The fastest: noise (another process, an interrupt) only ever adds time.
    return min_of(t, PLAN_ROUNDS)


cdef int measure_team(int team) except -1:
    """Fill plan_barrier_s[team], plan_fma_s[team] and plan_fma_s[1] if not yet measured."""
    if plan_barrier_s[team] >= 0 and plan_fma_s[team] >= 0 and plan_fma_s[1] >= 0:
        return 0
    cdef Py_ssize_t m = TILE_ROWS * 4, nstrips = max(PLAN_STRIPS, 2 * team)
    cdef Py_ssize_t width = nstrips * TILE_COLS
    # Operands of any values: the timing of multiply-adds does not depend on them (no
    # denormals: 0.5 and 1).
    A_array = np.full(m * plan_depth, 0.5, np.float32)
    Bp_array = np.ones(plan_depth * width, np.float32)
    C_array = np.empty(m * width, np.float32)
    cdef float[::1] A = A_array
    cdef float[::1] Bp = Bp_array
    cdef float[::1] C = C_array
    cdef double fmas = m * width * plan_depth, product
    # With the GIL held: two Python threads planning at once would time each other.
    if plan_fma_s[1] < 0:
        plan_fma_s[1] = time_product(1, nstrips, &A[0], &Bp[0], &C[0]) / fmas
    if team > 1:
        # The product first: it wakes the team's cores for the barriers.
        product = time_product(team, nstrips, &A[0], &Bp[0], &C[0])
        plan_barrier_s[team] = time_barriers(team)
        # Seconds per multiply-add of one thread of the team, its barrier left in: taking out
        # a barrier timed on a busy machine (longer than the product) would leave nothing.
        plan_fma_s[team] = product * team / fmas
    else:
        plan_barrier_s[team] = 0
    return 0


cdef int plan_threads(Py_ssize_t work, int available, bint double) except -1:
    """The team for a threaded driver's step of ``work`` multiply-adds, at most ``available``
    threads: of the teams 2, 4, 8, ... and ``available``, the one whose predicted step (work
    / n multiply-adds at the team's measured speed, plus a barrier) is fastest, if at most
    PLAN_GAIN of one thread's; else 1. float64 multiply-adds cost twice float32's (half as
    many to a vector). Costs under which a team lost are measured again once they are
    plan_retry_s old (unless pinned)."""
    global plan_lost_at
    if available < 2 or work < PLAN_MIN_WORK or plan_teams_off():
        return 1
    if not plan_pinned and plan_lost_at >= 0 and clock_now() - plan_lost_at > plan_retry_s:
        reset_plan_costs()
    available = min(available, PLAN_TEAMS - 1)
    cdef int n = 2, team, best = 1
    cdef double scale = 2 if double else 1
    cdef double alone = -1, best_time = -1, step
    while True:
        team = min(n, available)
        measure_team(team)
        if alone < 0:
            alone = best_time = work * plan_fma_s[1] * scale
        step = work * plan_fma_s[team] * scale / team + plan_barrier_s[team]
        if step < best_time and step <= PLAN_GAIN * alone:
            best, best_time = team, step
        if team == available:
            if best == 1 and not plan_pinned and plan_lost_at < 0:
                plan_lost_at = clock_now()
            return best
        n *= 2


cdef int plan_rows(Py_ssize_t B, Py_ssize_t row_work, Py_ssize_t u_bytes, Py_ssize_t l2_bytes,
                   int available) except -1:
    """The team that splits the batch's rows (forward_parallel's ``by_rows``), or 0 to split
    hidden units as plan_threads says: all ``available`` threads when a step has
    PLAN_MIN_WORK multiply-adds (``row_work`` a row), U packed (``u_bytes``) is at most
    twice a core's L2 (``l2_bytes``), and either each thread has a tile of rows or more
    (row_tiles), or U fits half of L2 and each thread has four rows, or two or three of a
    batch smaller than a tile.

    A team of rows has no barrier a step, and each thread reads only its own rows of
    h_{t-1}; but each reads all of U at every step, where a team of units reads its share.
    The barrier and the exchange of h cost about the same at any size, the reads of U grow
    with it: on a 2-vCPU Zen 3 guest rows were faster up to H = 256 (U 1 MiB, L2 512 KiB)
    and slower from H = 512 when the caches had cooled between calls (docs/performance.md).
    With less than a tile each, rows won on Zen 4 where U stays in L2 (B = 4 to 8 at
    H <= 128 with AVX-512's 8-row tiles, B = 4 and 5 with AVX2's 6-row ones) and lost where it
    does not (B = 4, H = 256 with AVX-512; B = 6, H = 256 with AVX2), and at B = 6, H = 128
    with AVX2, where a team of units gives each thread a whole tile (docs/performance.md).
    The measured costs of a barrier between idle cores (plan_threads) leave the exchange out
    and predict units everywhere, so this is a rule of the shape and the CPU's L2, not a
    prediction."""
    available = min(available, PLAN_TEAMS - 1)
    if (available < 2 or B * row_work < PLAN_MIN_WORK or u_bytes > 2 * l2_bytes
            or plan_teams_off()):
        return 0
    if row_tiles(B) >= available:
        return available
    # Less than a tile each: rows where U stays in L2 and each thread gets four rows (the
    # rows kernel's widest pass) or, with two or three, where the batch is less than a tile
    # (so that a team of units would give each thread a part tile as well).
    if u_bytes <= l2_bytes // 2 and (B >= 4 * available
                                     or (B >= 2 * available and B < TILE_ROWS)):
        return available
    return 0


def plan_costs():
    """The costs measured so far (see plan_threads), per team size: {n: {"barrier_s",
    "fma_s"}}; team 1 is one thread alone. Empty until a shape needed them."""
    return {n: {"barrier_s": max(plan_barrier_s[n], 0), "fma_s": plan_fma_s[n]}
            for n in range(1, PLAN_TEAMS) if plan_fma_s[n] >= 0}


def forget_plan_costs():
    """Forget the measured (or pinned) costs, so that the next plan measures them again
    (after the machine's load has changed, say)."""
    global plan_pinned, plan_call_work
    reset_plan_costs()
    plan_pinned = False
    plan_call_work = PLAN_CALL_WORK


def set_plan_costs(costs, bint pin=True, call_work=None):
    """Replace the measured costs: ``costs`` as plan_costs() returns them (for tests of the
    choice, and to pin a plan). ``pin=False``: treat them as measured ones, which are
    measured again plan_retry_s after a team lost under them. ``call_work``: the
    multiply-adds of a call below which it runs alone (0: never; forget_plan_costs
    restores the default, 2**23)."""
    global plan_pinned, plan_call_work
    if call_work is not None:
        if not 0 <= call_work:
            raise ValueError(f"set_plan_costs: call_work must be >= 0; got {call_work}")
        plan_call_work = call_work
    reset_plan_costs()
    plan_pinned = pin
    for n, c in costs.items():
        if not 1 <= n < PLAN_TEAMS or c["fma_s"] <= 0 or c["barrier_s"] < 0:
            raise ValueError(f"set_plan_costs: team {n} with {c} is not a team size in "
                             f"[1, {PLAN_TEAMS - 1}] with positive costs")
        plan_barrier_s[n], plan_fma_s[n] = c["barrier_s"], c["fma_s"]


def watch_team(int team, double seconds, double waited, double work, bint double=False):
    """plan_watch_team: report a call of ``work`` multiply-adds on a team of ``team`` threads
    that took ``seconds``, its threads having waited ``waited`` seconds in all (for tests)."""
    plan_watch_team(team, seconds, waited, work, double)


def teams_off():
    """Whether teams are off now, after a call whose threads waited more than half their time
    (the machine's other work had a core), and how many times that happened in this process:
    (bool, int)."""
    return bool(plan_teams_off()), plan_teams_turned_off


def set_plan_retry(double seconds):
    """Set after how many seconds costs under which a team lost are measured again (10 by
    default); returns the previous value."""
    global plan_retry_s
    if not seconds >= 0:
        raise ValueError(f"set_plan_retry: seconds must be >= 0; got {seconds}")
    previous, plan_retry_s = plan_retry_s, seconds
    return previous


def plan_team(Py_ssize_t work, int available, bint double=False):
    """The team plan_threads chooses for a step of ``work`` multiply-adds on at most
    ``available`` threads (measuring the costs it lacks)."""
    return plan_threads(work, available, double)
