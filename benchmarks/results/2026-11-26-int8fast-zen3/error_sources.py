"""Which rounding sets lstmx int8's max abs error on L: a float64 simulation of one LSTM layer
with int8 per-channel weights and activations rounded per row to 8 bits (127 levels) or 7 bits
(63) separately for x (input projection) and h (recurrent product). Output in README.md.

    python error_sources.py 100 64 512 512      # L: T B I H
"""
import sys

import numpy as np
from scipy.special import expit

import lstmx


def round_rows(v, levels):
    if levels is None:
        return v
    s = np.abs(v).max(axis=1, keepdims=True) / levels
    s[s == 0] = 1
    return np.rint(np.clip(v / s, -levels, levels)) * s


def round_weights(W):
    s = np.abs(W).max(axis=1, keepdims=True) / 127
    return np.rint(W / s) * s


def run(p, x, levels_x, levels_h, quantise_weights=True):
    T, B, _ = x.shape
    H = p["weight_hh_l0"].shape[1]
    W, U = p["weight_ih_l0"], p["weight_hh_l0"]
    if quantise_weights:
        W, U = round_weights(W), round_weights(U)
    b = p["bias_ih_l0"] + p["bias_hh_l0"]
    h, c, ys = np.zeros((B, H)), np.zeros((B, H)), []
    for t in range(T):
        z = b + round_rows(x[t], levels_x) @ W.T + round_rows(h, levels_h) @ U.T
        i, f = expit(z[:, :H]), expit(z[:, H:2 * H])
        g, o = np.tanh(z[:, 2 * H:3 * H]), expit(z[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        ys.append(h)
    return np.array(ys)


def main():
    T, B, I, H = (int(a) for a in sys.argv[1:5])
    lstm = lstmx.LSTM(I, H, seed=0)
    p = {k: v.astype(np.float64) for k, v in lstm.parameters().items()}
    x = np.random.default_rng(0).standard_normal((T, B, I))
    exact = run(p, x, None, None, quantise_weights=False)
    for name, lx, lh in [("weights only", None, None), ("x 8-bit, h 8-bit", 127, 127),
                         ("x 7-bit, h 7-bit", 63, 63), ("x 8-bit, h 7-bit", 127, 63),
                         ("x 7-bit, h 8-bit", 63, 127)]:
        print(f"{name:18s} max abs error {np.abs(run(p, x, lx, lh) - exact).max():.4f}")


if __name__ == "__main__":
    main()
