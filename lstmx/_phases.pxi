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
