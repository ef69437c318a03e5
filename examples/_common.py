"""Plumbing shared by the examples: arguments, progress bar, learning-curve plot, timing.

Not part of lstmx: each example imports it from its own directory.
"""
from __future__ import annotations

import argparse
import os
import time

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "output")


def make_parser(doc: str) -> argparse.ArgumentParser:
    """A parser with the options every example has: --seed, --out, --no-progress."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="seed of data and initialisation")
    parser.add_argument("--out", default=DEFAULT_OUT, help="directory of the plot")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS and OpenMP threads (more only pays on a quiet machine "
                             "with big sizes)")
    return parser


def blas_threads(n: int):
    """A context limiting BLAS and OpenMP (the kernels' threads over hidden units) to ``n``
    threads.

    The examples' matrix products are small (batch x hidden); on a machine shared with other
    work, extra threads spin waiting for cores and make each step many times slower.
    """
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=n)


def progress(total: int, desc: str, disable: bool = False):
    """A tqdm progress bar on stderr (updated at most once a second when not a terminal)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=disable, dynamic_ncols=True,
                mininterval=0.2 if os.isatty(2) else 5.0)


def save_curve(path: str, curves: dict, xlabel: str, ylabel: str, title: str,
               hlines: dict | None = None, logy: bool = True, styles: dict | None = None
               ) -> str:
    """Write a learning-curve PNG.

    Parameters
    ----------
    curves : dict of label -> (x, y)
    hlines : dict of label -> y, optional
        Reference levels (a baseline, a target) drawn as dotted lines.
    styles : dict of label -> dict, optional
        Keyword arguments of ``plot`` for some curves (colour, line style, marker).
    """
    return save_panels(path, [dict(curves=curves, ylabel=ylabel, hlines=hlines, logy=logy,
                                   styles=styles)], xlabel, title)


def save_panels(path: str, panels: list, xlabel: str, title: str) -> str:
    """Write a PNG of curves against one x axis, one panel per unit of y.

    Parameters
    ----------
    panels : list of dicts
        Each: ``curves``, ``ylabel`` and optionally ``hlines``, ``logy`` (default True) and
        ``styles``, as for ``save_curve``. Panels are stacked, sharing the x axis.
    """
    # The object-oriented API needs no GUI backend and leaves pyplot's global state alone.
    from matplotlib.figure import Figure
    fig = Figure(figsize=(8.4, 1.0 + 3.0 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels):
        curves = panel["curves"]
        for label, (x, y) in curves.items():
            ax.plot(x, y, label=label, **(panel.get("styles") or {}).get(label, {}))
        for i, (label, y) in enumerate((panel.get("hlines") or {}).items()):
            ax.axhline(y, linestyle=":", color=f"C{len(curves) + i}", label=label)
        if panel.get("logy", True):
            ax.set_yscale("log")
        ax.set(ylabel=panel["ylabel"])
        ax.grid(True, alpha=0.3)
        # Beside the axes, not over them: a legend inside covered the curves.
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0,
                  fontsize="small")
    axes[-1].set(xlabel=xlabel)
    axes[0].set(title=title)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


class Stopwatch:
    """Wall time since creation, in seconds."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start
