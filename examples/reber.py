"""The embedded Reber grammar: predict every possible next symbol of grammatical strings.

A Reber string walks the grammar below from B to E, choosing between the two arrows out of
each node with equal probability::

    B -> 1;  1 -T-> 2, 1 -P-> 3;  2 -S-> 2, 2 -X-> 4;  3 -T-> 3, 3 -V-> 5;
    4 -X-> 3, 4 -S-> 6;  5 -P-> 4, 5 -V-> 6;  6 -E-> end

An embedded Reber string is B, then T or P, then a Reber string, then the same T or P again,
then E (Hochreiter & Schmidhuber 1997, sec. 5.1, after Smith & Zipser 1989 and Cleeremans et
al. 1989): to predict the second-last symbol the network must remember the second symbol across
the whole inner string, which local statistics cannot do.

The network reads a string one symbol at a time (one-hot, 7 inputs) and outputs a distribution
over the next symbol: ``LSTM(7, hidden)``, ``Linear(hidden, 7)`` and the softmax
cross-entropy of the symbol that follows, over batches of fresh random strings of different
lengths (``lengths`` in the LSTM, a mask in the loss). A string counts as predicted correctly,
as in the 1997 paper, when at every step the symbols that may come next are exactly the most
probable outputs (the k most probable, for k legal successors). Training stops when every
string of a fixed test set of 1000 strings is predicted correctly.

Measured (float32, 2 shared cores, defaults: hidden 16, batch 32, Adam lr 1e-2, gradient
norm clipped at 1.0, test every 20 steps): seed 0 predicts all 1000 test strings correctly
after 500 steps in 3 s (the least probability given to the right second-last symbol is
0.92); seeds 1 and 2 after 380 and 320 steps, in 1-2 s. The first ~400 steps learn the
inner grammar, and half the strings (those whose second-last symbol is guessed right) pass;
then the long-range T/P dependency is learnt.

Run::

    python examples/reber.py
"""
from __future__ import annotations

import os

import numpy as np

import _common
import lstmx
from lstmx.losses import cross_entropy
from lstmx.optim import Adam, clip_grad_norm

SYMBOLS = "BTSXPVE"
# The Reber grammar: node -> [(symbol, next node), ...]; node 6 emits E and ends.
REBER = {1: [("T", 2), ("P", 3)], 2: [("S", 2), ("X", 4)], 3: [("T", 3), ("V", 5)],
         4: [("X", 3), ("S", 6)], 5: [("P", 4), ("V", 6)], 6: [("E", None)]}


def reber_string(rng):
    """One embedded Reber string and, for each of its symbols but the last, the set of
    symbols that may follow it."""
    wrap = "TP"[rng.integers(2)]
    symbols, legal = ["B"], [{"T", "P"}]
    symbols.append(wrap)
    legal.append({"B"})
    symbols.append("B")
    node = 1
    while node is not None:
        arrows = REBER[node]
        legal.append({s for s, _ in arrows})
        symbol, node = arrows[rng.integers(len(arrows))]
        symbols.append(symbol)
    legal.append({wrap})
    symbols.append(wrap)
    legal.append({"E"})
    symbols.append("E")
    return "".join(symbols), legal


def encode(strings):
    """Padded inputs x (T, B, 7) (one-hot of all symbols but the last), next-symbol targets
    (T, B), lengths (B,) and the valid-step mask (T, B)."""
    lengths = np.array([len(s) - 1 for s in strings])
    T, B = lengths.max(), len(strings)
    codes = np.zeros((T + 1, B), dtype=np.intp)
    for b, s in enumerate(strings):
        codes[:len(s), b] = [SYMBOLS.index(c) for c in s]
    x = np.eye(len(SYMBOLS), dtype=np.float32)[codes[:-1]]
    mask = np.arange(T)[:, None] < lengths
    return x, codes[1:], lengths, mask


def predicted_correctly(probs, legal_sets):
    """Whether, at every step of one string, the k most probable symbols are its k legal
    successors. ``probs`` (L, 7) are the network's next-symbol probabilities."""
    for p, legal in zip(probs, legal_sets):
        top = np.argsort(p)[::-1][:len(legal)]
        if {SYMBOLS[i] for i in top} != legal:
            return False
    return True


def train(hidden=16, batch=32, steps=5000, lr=1e-2, clip=1.0, eval_every=20,
          test_size=1000, seed=0, progress=True):
    """Train on embedded Reber strings; returns a dict of the result and the learning curve."""
    rng = np.random.default_rng(seed)
    test_rng = np.random.default_rng([seed, 1])
    test = [reber_string(test_rng) for _ in range(test_size)]
    test_x, _, test_lengths, _ = encode([s for s, _ in test])
    lstm = lstmx.LSTM(len(SYMBOLS), hidden, seed=seed)
    head = lstmx.Linear(hidden, len(SYMBOLS), seed=seed)
    opt = Adam([lstm.parameters(), head.parameters()], lr=lr)

    def evaluate():
        """Fraction of test strings predicted correctly, and the least probability given to
        the right second-last symbol (the one that needs the long-term memory)."""
        y, _ = lstm(test_x, lengths=test_lengths)
        logits = head(y)
        probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probs /= probs.sum(axis=-1, keepdims=True)
        ok = [predicted_correctly(probs[:n, b], legal)
              for b, ((_, legal), n) in enumerate(zip(test, test_lengths))]
        wrap = [probs[n - 2, b, SYMBOLS.index(s[1])]
                for b, ((s, _), n) in enumerate(zip(test, test_lengths))]
        return float(np.mean(ok)), float(np.min(wrap))

    clock = _common.Stopwatch()
    solved, wrap_p = evaluate()
    curve = {"step": [0], "solved": [solved]}
    losses = []
    bar = _common.progress(steps, "embedded Reber", disable=not progress)
    step = 0
    for step in range(1, steps + 1):
        x, target, lengths, mask = encode([reber_string(rng)[0] for _ in range(batch)])
        y, _, lstm_cache = lstm.forward_train(x, lengths=lengths)
        logits, head_cache = head.forward_train(y)
        loss, dlogits = cross_entropy(logits, target, mask=mask)
        dy, g_head = head.backward(head_cache, dlogits)
        _, _, g_lstm = lstm.backward(lstm_cache, dy)
        clip_grad_norm([g_lstm, g_head], clip)
        opt.step([g_lstm, g_head])
        losses.append(loss / np.log(2))
        bar.update()
        if step % eval_every == 0 or step == steps:
            curve["step"].append(step)
            solved, wrap_p = evaluate()
            curve["solved"].append(solved)
            bar.set_postfix(bits=f"{np.mean(losses[-eval_every:]):.3f}",
                            solved=f"{solved:.3f}")
            if solved == 1.0:
                break
    bar.close()
    return {"solved": curve["solved"][-1], "test_size": test_size, "steps": step,
            "seconds": clock(), "min_p_second_last": wrap_p, "curve": curve,
            "bits_per_symbol": losses}


def main(argv=None):
    parser = _common.make_parser(__doc__)
    parser.add_argument("--hidden", type=int, default=16, help="LSTM hidden size")
    parser.add_argument("--batch", type=int, default=32, help="strings per step")
    parser.add_argument("--steps", type=int, default=5000, help="most training steps")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    parser.add_argument("--clip", type=float, default=1.0, help="gradient norm clip")
    parser.add_argument("--eval-every", type=int, default=20, help="steps between tests")
    parser.add_argument("--test-size", type=int, default=1000, help="test strings")
    args = parser.parse_args(argv)
    with _common.blas_threads(args.threads):
        r = train(args.hidden, args.batch, args.steps, args.lr, args.clip, args.eval_every,
                  args.test_size, args.seed, not args.no_progress)
    bits = np.asarray(r["bits_per_symbol"])
    smooth = np.convolve(bits, np.ones(50) / 50, mode="valid")
    steps = np.arange(50, len(bits) + 1)
    r["plot"] = _common.save_panels(
        os.path.join(args.out, "reber.png"),
        [dict(curves={"train (mean of 50 steps)": (steps, smooth)},
              ylabel="loss (bits/symbol)", logy=False),
         dict(curves={"test strings": (r["curve"]["step"], r["curve"]["solved"])},
              ylabel="fraction predicted\ncorrectly", logy=False)],
        "step", "Embedded Reber grammar")
    print(f"plot: {r['plot']}")
    n_ok = round(r["solved"] * r["test_size"])
    print(f"embedded Reber: {n_ok}/{r['test_size']} test strings predicted correctly "
          f"(least probability of the right second-last symbol {r['min_p_second_last']:.3f}) "
          f"after {r['steps']} steps in {r['seconds']:.0f} s")
    return r


if __name__ == "__main__":
    main()
