# Phase timers of the layer drivers: where a forward or backward pass spends its time, read by
# ``python -m lstmx bench --profile``.
#
# Included by _kernels.pyx. Off unless ``profile_phases(True)``; on, a timer is one read of
# the monotonic clock (tens of nanoseconds) a few times a step; off, one branch.

from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

cdef enum:
    PHASE_INPUT = 0      # x @ W.T; backward: dx = dz @ W
    PHASE_RECURRENT = 1  # h @ U.T and m @ R.T; backward: dz @ U and dh @ R
    PHASE_CELL = 2       # the element-wise cell and its row bookkeeping
    PHASE_WEIGHTS = 3    # backward: dW, dU, dR, db and the packing of their operands
    PHASE_SYNC = 4       # waiting at barriers for the other threads
    PHASES = 5
    PHASE_SLOTS = 64     # threads recorded (see thread_slot); more share the last slot

PHASE_NAMES = ("input projection", "recurrent products", "cell (element-wise)",
               "weight gradients", "synchronisation")

cdef bint profiling = False
cdef double phase_seconds[PHASE_SLOTS][PHASES]


cdef inline double clock_now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + 1e-9 * ts.tv_nsec


cdef inline double lap_start() noexcept nogil:
    """The time a phase starts from (0 when not profiling)."""
    return clock_now() if profiling else 0


cdef inline double lap(double since, int phase) noexcept nogil:
    """Adds the time from ``since`` to now to this thread's ``phase``; returns now, where the
    next phase starts (0 when not profiling)."""
    if not profiling:
        return 0
    cdef double now = clock_now()
    cdef int slot = thread_slot()
    if slot >= PHASE_SLOTS or slot < 0:
        slot = PHASE_SLOTS - 1
    phase_seconds[slot][phase] += now - since
    return now


cdef inline double waited_barrier() noexcept nogil:
    """A barrier of the team; returns the seconds this thread waited at it (two reads of the
    clock), which the threaded drivers add up for the plan's watch on contention
    (plan_watch_team)."""
    cdef double t0 = clock_now()
    barrier()
    return clock_now() - t0


cdef enum:
    TEAM_SLOTS = 65  # threads of a team whose waits are kept (PLAN_TEAMS, _plan.pxi)


cdef inline void team_waits_clear(double *waits, double *ends) noexcept nogil:
    """Before a team's parallel region: no thread has reported (ends[i] < 0)."""
    cdef int i
    for i in range(TEAM_SLOTS):
        waits[i] = 0
        ends[i] = -1


cdef inline void team_waits_mark(double *waits, double *ends, int part,
                                 double wait) noexcept nogil:
    """At the end of thread ``part``'s work: the seconds it waited at barriers, and when it
    finished."""
    if 0 <= part < TEAM_SLOTS:
        waits[part] = wait
        ends[part] = clock_now()


cdef inline double team_waits_total(const double *waits, const double *ends,
                                    int threads) noexcept nogil:
    """After the region: the seconds the team's threads waited in all, at barriers and, at
    the end, for the last of them to finish."""
    cdef int i
    cdef double last = -1, total = 0
    for i in range(min(threads, TEAM_SLOTS)):
        last = max(last, ends[i])
    for i in range(min(threads, TEAM_SLOTS)):
        if ends[i] >= 0:
            total += waits[i] + (last - ends[i])
    return total


def profile_phases(bint on):
    """Turn the phase timers on (from zero) or off. Profiling is for one caller at a time:
    runs from two Python threads at once add into the same timers."""
    global profiling
    memset(phase_seconds, 0, sizeof(phase_seconds))
    profiling = on


def phase_times():
    """Seconds in each phase (named by ``PHASE_NAMES``) since ``profile_phases(True)``, per
    thread that recorded any: a dict {thread slot: tuple of seconds}."""
    cdef int slot, k
    out = {}
    for slot in range(PHASE_SLOTS):
        row = tuple(phase_seconds[slot][k] for k in range(PHASES))
        if any(row):
            out[slot] = row
    return out
