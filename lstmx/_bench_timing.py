"""Timing engine of the bench: interleaved samples, their noise, and ratios paired by round."""
from __future__ import annotations

import dataclasses
import gc
import math
import time

import numpy as np

__all__ = ["NOISY", "Timing", "measure", "measure_settled", "ratios", "ratios_of_medians"]

# A timing whose interquartile range passes this fraction of its median is noisy.
NOISY = 0.25


@dataclasses.dataclass
class Timing:
    """Per-call times (seconds) of one operation: one sample per repetition, each the mean
    over ``number`` back-to-back calls."""

    samples: list
    number: int

    @property
    def median(self) -> float:
        return float(np.median(self.samples))

    @property
    def spread(self) -> float:
        """Interquartile range / median: the noise of the measurement."""
        q1, q3 = np.percentile(self.samples, [25, 75])
        return float((q3 - q1) / self.median)


def _sample(fn, context, number) -> float:
    # Python's cyclic garbage collector is off while timing, as timeit does: a full
    # collection walks every object of the process (torch's thousands included) and would
    # land on whichever microsecond-scale call happened to trigger it (interquartile ranges
    # of 40-80% on the cell's training step with it on).
    enabled = gc.isenabled()
    gc.disable()
    try:
        with context:
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            return (time.perf_counter() - t0) / number
    finally:
        if enabled:
            gc.enable()


def _warm_up(fn, context, warm_time) -> float:
    """Call ``fn`` at least twice and for at least ``warm_time`` seconds (oneDNN, say, compiles
    its kernels over the first calls); returns the median of the last calls' times."""
    times = []
    start = time.perf_counter()
    while len(times) < 2 or time.perf_counter() - start < warm_time:
        times.append(_sample(fn, context(), 1))
    return float(np.median(times[-5:]))


def measure(ops, repeat=11, warmup=1, min_time=0.02, warm_time=0.2, gap=0.2,
            max_time=None, min_repeat=5) -> dict:
    """Time several operations side by side.

    Parameters
    ----------
    ops : dict of name -> (callable, context factory)
        The operations; the context (``torch.no_grad`` say) is entered around each sample.
    repeat : int
        Samples kept per operation.
    warmup : int
        Interleaved rounds run and discarded after each operation's own warm-up.
    min_time : float
        Each sample repeats its call until it lasts about this long (seconds), so that
        microsecond calls are not lost in the timer's resolution.
    warm_time : float
        Each operation first runs alone for at least this long (and twice), which also
        calibrates how many calls a sample takes.
    gap : float
        Pause after each sample and warm-up (seconds). BLAS and OpenMP worker threads spin
        for a while after their work (OpenBLAS about 2**28 cycles, 0.1 s) before they sleep;
        on 2 cores, spinning threads of the library timed before would take a core from the
        next one, whose own threads then wait at every barrier. With a 2 ms gap, torch's S
        forward took a second per call and M's spreads passed 200%; with 0.2 s, 0.1 to 10%.
        After the pause each sample follows one untimed call of its own operation: on a
        virtual machine a core left idle that long took milliseconds to rejoin a team
        (docs/performance.md), which a program calling the model in a loop does not meet.
    max_time : float, optional
        Stop after the round in which the timed rounds pass this many seconds, but not
        before ``min(min_repeat, repeat)`` samples: a budget for the slow configurations.

    Returns
    -------
    dict of name -> Timing
        Round r runs the operations in the order rotated by r (interleaved round-robin), so
        that a slow drift of the shared machine falls on all of them alike.
    """
    names = list(ops)
    number = {}
    for name in names:
        one = _warm_up(*ops[name], warm_time)
        number[name] = max(1, math.ceil(min_time / max(one, 1e-9)))
        if gap:
            time.sleep(gap)
    samples = {name: [] for name in names}
    start = time.perf_counter()
    for r in range(warmup + repeat):
        kept = r - warmup  # samples per operation so far
        if (max_time is not None and kept >= min(min_repeat, repeat)
                and time.perf_counter() - start > max_time):
            break
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            fn, ctx = ops[name]
            if gap:
                _sample(fn, ctx(), 1)
            t = _sample(fn, ctx(), number[name])
            if r >= warmup:
                samples[name].append(t)
            if gap:
                time.sleep(gap)
    return {name: Timing(samples[name], number[name]) for name in names}


def measure_settled(ops, retries=2, on_retry=None, **kwargs):
    """``measure(ops, **kwargs)``, measured again (at most ``retries`` more times) while any
    of its timings is noisy (interquartile range above NOISY of the median).

    A burst of other work on a shared machine can land on the samples of one operation
    more than on the others' and swing a ratio by 20% (lstmx against itself, the same
    kernels, has read 0.76 in such a measurement). Whether to measure again depends only on
    the spreads, never on the times, and the same for every operation.

    Returns
    -------
    timings : dict of name -> Timing
        The first attempt without a noisy timing, or else the attempt whose noisiest timing
        is least noisy.
    discarded : list of dict of name -> Timing
        The other attempts, in order.
    """
    def worst(timings):
        return max(t.spread for t in timings.values())

    attempts = []
    while True:
        attempts.append(measure(ops, **kwargs))
        if worst(attempts[-1]) <= NOISY or len(attempts) > retries:
            break
        if on_retry is not None:
            on_retry({name: t.spread for name, t in attempts[-1].items() if t.spread > NOISY})
    best = min(range(len(attempts)), key=lambda a: worst(attempts[a]))
    return attempts[best], attempts[:best] + attempts[best + 1:]


def ratios(timings: dict, base="lstmx") -> dict:
    """For every other timing, the median over the rounds of ``time(other) / time(base)``
    within the round (above 1: base is faster).

    The two samples of a round were taken seconds apart, so a slowdown of the shared
    machine that lasts longer than that falls on both and cancels in their ratio, whereas
    it shifts one median more than the other when they are compared instead. Over the 385
    comparisons in eleven saved runs of the bench, the 90% bootstrap interval of this ratio
    was 9.4% of its value wide (median), that of the ratio of medians 13.8%, and the two
    differed by at most 0.4% in the median for each library, in both directions
    (``ratios_of_medians``; docs/performance.md).
    """
    if base not in timings:
        return {}
    t0 = np.asarray(timings[base].samples, dtype=float)
    out = {}
    for name, t in timings.items():
        if name == base:
            continue
        if len(t.samples) != len(t0):
            raise ValueError(f"ratios pair samples by round: {name} has {len(t.samples)}, "
                             f"{base} {len(t0)}")
        out[name] = float(np.median(np.asarray(t.samples, dtype=float) / t0))
    return out


def ratios_of_medians(timings: dict, base="lstmx") -> dict:
    """``median(other) / median(base)`` for every other timing: the ratio of the reported
    times, kept beside ``ratios`` in the results."""
    if base not in timings:
        return {}
    t0 = timings[base].median
    return {name: t.median / t0 for name, t in timings.items() if name != base}
