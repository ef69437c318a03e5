"""Measuring spike delays: a timing task for peephole connections (Gers et al. 2002).

The input is a stream of spikes (1 at a spike, 0 elsewhere) separated by random whole delays
in [d_min, d_max]. At each spike the network must output the delay since the previous spike,
``delay / d_max``, and nothing is asked between spikes: the "measuring spike delays" task of
Gers, Schraudolph & Schmidhuber (2002, sec. 4.1). A spike's delay counts as measured when the
output is within half a step of it, ``|d_max * output - delay| < 0.5``, so neighbouring
delays (29 and 30, say) must be told apart.

Gers et al. report that peephole connections, which let the gates read the cell (the timer)
directly instead of through the squashed, gated output, are what let their LSTM learn such
precise timing (delays of 49 and 50 steps told apart, in their hardest setting).
Here the same small network, ``LSTM(1, hidden)`` and a ``Linear(hidden, 1)`` readout, is
trained with and without ``peephole=True`` from the same seeds, data and hyper-parameters
(Keras initialisation, Adam, gradient clipping, mean squared error at the spikes), each run
until it measures 99% of the delays of a fixed test set of 200 streams, or for at most
``--steps`` steps.

Measured (float32, 2 shared cores), defaults: hidden 8, streams of 200 steps, delays in
[20, 30], batch 32, Adam lr 1e-2, clip 1.0, at most 6000 steps, seeds 0, 1, 2: both variants
solve all three runs, the peephole cell at steps 1700, 3100 and 3800, the plain cell at 1800,
3100 and 5100 (144 s for the six runs). With ``--hidden 4``, over seeds 0 to 9, each variant
solves 8 of 10 runs (the solved runs at a median of 2650 steps with peepholes, 4400
without). With hidden 1 or 2, or with delays in [40, 50] (streams of 300 steps) at hidden 8,
neither variant learns within 3000 steps (two or three seeds each).

So this does not reproduce the paper's finding: trained by full backpropagation through time
with Adam, rather than the truncated gradient of the original, the plain cell learns to
measure delays as reliably as the peephole cell. The peephole runs that succeed tend to do so
sooner, but the difference is within seed-to-seed variation at these sizes.

Run::

    python examples/timing_peephole.py
    python examples/timing_peephole.py --hidden 4      # a smaller network
"""
from __future__ import annotations

import os

import numpy as np

import _common
import lstmx
from lstmx.losses import mse_loss
from lstmx.optim import Adam, clip_grad_norm


def make_batch(rng, T, batch, d_min, d_max):
    """Spike inputs x (T, B, 1), the delay at each spike (T, B) (0 elsewhere) and the mask
    of steps with a target (every spike but the first)."""
    x = np.zeros((T, batch, 1), np.float32)
    delays = np.zeros((T, batch))
    for b in range(batch):
        t = int(rng.integers(0, d_max))  # a random phase: the first spike
        x[t, b] = 1
        while True:
            d = int(rng.integers(d_min, d_max + 1))
            if t + d >= T:
                break
            t += d
            x[t, b] = 1
            delays[t, b] = d
    return x, delays, delays > 0


def train(peephole, hidden=8, T=200, d_min=20, d_max=30, batch=32, steps=6000, lr=1e-2,
          clip=1.0, eval_every=100, solved_at=0.99, test_size=200, seed=0, progress=True):
    """Train one network until it measures ``solved_at`` of the test delays or for
    ``steps`` steps; returns a dict of the result and the learning curve."""
    rng = np.random.default_rng(seed)
    test_x, test_delays, test_mask = make_batch(np.random.default_rng([seed, 1]), T,
                                                test_size, d_min, d_max)
    lstm = lstmx.LSTM(1, hidden, peephole=peephole, seed=seed, init="keras")
    head = lstmx.Linear(hidden, 1, seed=seed)
    opt = Adam([lstm.parameters(), head.parameters()], lr=lr)

    def evaluate():
        y, _ = lstm(test_x)
        pred = d_max * head(y)[..., 0][test_mask]
        err = np.abs(pred - test_delays[test_mask])
        return float(np.mean(err < 0.5)), float(np.mean(err))

    clock = _common.Stopwatch()
    acc, err = evaluate()
    curve = {"step": [0], "accuracy": [acc], "mean_error": [err]}
    bar = _common.progress(steps, f"{'peephole' if peephole else 'plain'} seed {seed}",
                           disable=not progress)
    for step in range(1, steps + 1):
        x, delays, mask = make_batch(rng, T, batch, d_min, d_max)
        y, _, lstm_cache = lstm.forward_train(x)
        out, head_cache = head.forward_train(y)
        loss, dout = mse_loss(out[..., 0][mask], (delays[mask] / d_max))
        dfull = np.zeros_like(out)
        dfull[..., 0][mask] = dout  # the loss reads the spike steps only
        dy, g_head = head.backward(head_cache, dfull)
        _, _, g_lstm = lstm.backward(lstm_cache, dy)
        clip_grad_norm([g_lstm, g_head], clip)
        opt.step([g_lstm, g_head])
        bar.update()
        if step % eval_every == 0 or step == steps:
            acc, err = evaluate()
            curve["step"].append(step)
            curve["accuracy"].append(acc)
            curve["mean_error"].append(err)
            bar.set_postfix(measured=f"{acc:.3f}", error=f"{err:.2f} steps")
            if acc >= solved_at:
                break
    bar.close()
    return {"peephole": peephole, "seed": seed, "accuracy": acc, "mean_error": err,
            "solved_step": step if acc >= solved_at else None, "seconds": clock(),
            "curve": curve}


def main(argv=None):
    parser = _common.make_parser(__doc__)
    parser.add_argument("--seeds", type=int, default=3,
                        help="runs per variant, seeds seed .. seed + seeds - 1")
    parser.add_argument("--hidden", type=int, default=8, help="LSTM hidden size")
    parser.add_argument("--T", type=int, default=200, help="steps per stream")
    parser.add_argument("--d-min", type=int, default=20, help="shortest delay")
    parser.add_argument("--d-max", type=int, default=30, help="longest delay")
    parser.add_argument("--batch", type=int, default=32, help="streams per step")
    parser.add_argument("--steps", type=int, default=6000, help="most training steps per run")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    parser.add_argument("--clip", type=float, default=1.0, help="gradient norm clip")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between tests")
    parser.add_argument("--solved-at", type=float, default=0.99,
                        help="a run is solved (and stops) when it measures this fraction "
                        "of the test delays")
    args = parser.parse_args(argv)
    clock = _common.Stopwatch()
    runs = []
    with _common.blas_threads(args.threads):
        for peephole in (True, False):
            for seed in range(args.seed, args.seed + args.seeds):
                runs.append(train(peephole, args.hidden, args.T, args.d_min, args.d_max,
                                  args.batch, args.steps, args.lr, args.clip,
                                  args.eval_every, args.solved_at, seed=seed,
                                  progress=not args.no_progress))
    curves, styles = {}, {}
    for r in runs:
        label = f"{'peephole' if r['peephole'] else 'plain'}, seed {r['seed']}"
        curves[label] = (r["curve"]["step"], r["curve"]["mean_error"])
        # One colour per seed; solid with peepholes, dashed without.
        styles[label] = {"color": f"C{r['seed'] - args.seed}",
                         "linestyle": "-" if r["peephole"] else "--"}
    plot = _common.save_curve(os.path.join(args.out, "timing_peephole.png"), curves, "step",
                              "mean |error| at the spikes (steps)",
                              f"Measuring spike delays in [{args.d_min}, {args.d_max}], "
                              f"H = {args.hidden}", hlines={"half a step": 0.5},
                              styles=styles)
    print(f"plot: {plot}")
    summary = {}
    for peephole in (True, False):
        name = "peephole" if peephole else "plain"
        mine = [r for r in runs if r["peephole"] == peephole]
        solved = [r["solved_step"] for r in mine if r["solved_step"] is not None]
        summary[name] = len(solved)
        print(f"{name:8}: " + ", ".join(
            f"seed {r['seed']} measured {100 * r['accuracy']:.1f}% (mean error "
            f"{r['mean_error']:.2f} steps) after {r['curve']['step'][-1]} steps"
            for r in mine))
        summary[name + "_steps"] = ", ".join(map(str, solved)) or "-"
    print(f"spike delays in [{args.d_min}, {args.d_max}], H={args.hidden}: peephole solved "
          f"{summary['peephole']}/{args.seeds} runs (at steps {summary['peephole_steps']}), "
          f"plain {summary['plain']}/{args.seeds} (at steps {summary['plain_steps']}), "
          f"solved = {100 * args.solved_at:.0f}% of test delays within half a step; "
          f"{clock():.0f} s")
    return {"runs": runs, "solved": summary, "plot": plot, "seconds": clock()}


if __name__ == "__main__":
    main()
