"""``python -m lstmx plan``: what the kernels choose for a shape on this machine, and why.

For one layer and direction of the given shape this builds the kernels' calls (forward at
inference and in training, and backward) on zero arrays, without running them, and reports
each call's plan (``LayerForward.describe``, ``LayerBackward.describe``): the driver and its
threads, the chunking (forward chunks are sized to one core's L2, which is shown), and what
runs each product; and the costs the team size was chosen from (``_plan.pxi``: a barrier and a
multiply-add, measured once per process).
"""
from __future__ import annotations

import numpy as np

__all__ = ["describe_plan", "format_plan"]


def describe_plan(T: int, B: int, I: int, H: int, proj_size: int = 0, dtype=np.float32,
                  threads: int | None = None) -> dict:
    """The plans of one layer and direction of shape (T, B, I, H[, proj_size]) on ``threads``
    threads (default: the OpenMP pool's current limit). Allocates the arrays the calls take
    (about 5 T B 4H elements)."""
    from threadpoolctl import threadpool_limits

    from lstmx._config import _check_int, check_dtype
    from lstmx._dispatch import kernels, variant

    T, B, I, H = (_check_int(n, v, 1) for n, v in (("T", T), ("B", B), ("I", I), ("H", H)))
    proj_size = _check_int("proj_size", proj_size, 0)
    if proj_size >= H:
        raise ValueError(f"proj_size must be smaller than H={H}; got {proj_size}")
    dtype = check_dtype(dtype)
    Hout = proj_size or H
    zeros = lambda *shape: np.zeros(shape, dtype)  # noqa: E731
    x, W, U = zeros(T * B, I), zeros(4 * H, I), zeros(4 * H, Hout)
    R = zeros(proj_size, H) if proj_size else None

    def forward(training):
        return kernels.LayerForward(
            x=x, W=W, U=U, h=zeros(B, Hout), c=zeros(B, H), y=zeros(T, B, Hout), R=R,
            gates=zeros(T, B, 4 * H) if training else None,
            cells=zeros(T, B, H) if training else None)

    limits = threadpool_limits(threads) if threads is not None else None
    try:
        plans = {"forward (inference)": forward(False).describe(),
                 "forward (training)": forward(True).describe(),
                 "backward": kernels.LayerBackward(
                     x=x, W=W, U=U, R=R, h0=zeros(B, Hout), c0=zeros(B, H),
                     y=zeros(T, B, Hout), gates=zeros(T, B, 4 * H), cells=zeros(T, B, H),
                     dy=zeros(T, B, Hout), dh=zeros(B, Hout), dc=zeros(B, H),
                     dx=zeros(T * B, I), dW=zeros(4 * H, I), dU=zeros(4 * H, Hout),
                     dR=zeros(proj_size, H) if proj_size else None).describe()}
    finally:
        if limits is not None:
            limits.restore_original_limits()
    from lstmx._cpu import l1d_cache_bytes, l2_cache_bytes

    return {"shape": {"T": T, "B": B, "I": I, "H": H, "proj_size": proj_size},
            "dtype": dtype.name, "variant": variant, "threads": threads,
            "l2_bytes": l2_cache_bytes(), "l1d_bytes": l1d_cache_bytes(),
            "depth_block": kernels.get_depth_block(dtype == np.float64),
            "work_per_step": B * 4 * H * (I + Hout), "plans": plans,
            "costs": kernels.plan_costs()}


def format_plan(plan: dict) -> str:
    """The plan as text."""
    s = plan["shape"]
    shape = " ".join(f"{k}={v}" for k, v in s.items() if k != "proj_size" or v)
    # Blocks shorter than the longest (512) only in products that hold two (_gemm.pxd).
    depth_from = (f" in products of k >= {2 * plan['depth_block']}"
                  if plan["depth_block"] < 512 else "")
    lines = [f"lstmx plan: {shape}, {plan['dtype']}, {plan['variant']} kernels, "
             f"threads {plan['threads'] if plan['threads'] is not None else 'as the pool'}"
             f"; a step is {plan['work_per_step']:,} multiply-adds; L2 "
             f"{plan['l2_bytes'] // 1024} KiB (forward chunks fill half); L1d "
             f"{plan['l1d_bytes'] // 1024} KiB (the tiles sum k in blocks of "
             f"{plan['depth_block']}{depth_from})"]
    for name, p in plan["plans"].items():
        lines.append(f"  {name:20} " + ", ".join(f"{k} {v}" for k, v in p.items()
                                                   if v is not None))
    if plan["costs"]:
        lines.append("  measured once in this process (team: barrier, multiply-add of one "
                     "thread while the team multiplies):")
        for n, c in plan["costs"].items():
            barrier = f"{c['barrier_s'] * 1e6:.2f} us" if n > 1 else "-"
            lines.append(f"    {n} thread(s): barrier {barrier}, multiply-add "
                         f"{c['fma_s'] * 1e12:.1f} ps")
    else:
        lines.append("  (no team was considered: the serial drivers run this shape, its "
                     "steps or the whole call are too small to split, or one thread is "
                     "available)")
    return "\n".join(lines)
