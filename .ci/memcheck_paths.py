"""Every kernel path once, at small sizes: the workload that .ci/reliability.sh runs under
valgrind memcheck (where the full pytest suite would take hours).

Paths: inference, training forward and backward; float32 and float64; with and without bias,
peepholes, projection, the identity output; one and two directions; one and two layers;
full and ragged lengths; batch_first; T = B = H = 1; a sequence long enough that inference
splits the input projection into several chunks (forward and reverse); a chunked projection;
LSTMCell; two threads in the kernels at once; the regularisation options (dropout, recurrent
dropout, zoneout, layer norm, cell clip) with the others; and the quantised models (int8,
bfloat16); for every compiled kernel variant the process can run (lstmx._dispatch). Each result is checked against the NumPy reference so
that a wrong read shows up as a wrong answer too.

    python .ci/memcheck_paths.py            # CI size: every pair of option values
    python .ci/memcheck_paths.py --full     # every combination (256, about 15x longer)
"""
import argparse
import importlib
import itertools
import sys
import threading

import numpy as np

import lstmx
from lstmx import reference


def check(model, T, B, lengths, rng):
    cfg = model.config
    shape = (B, T, cfg.input_size) if cfg.batch_first else (T, B, cfg.input_size)
    x = rng.standard_normal(shape).astype(cfg.dtype)
    LD = cfg.num_layers * cfg.num_directions
    state = (rng.standard_normal((LD, B, cfg.output_size)).astype(cfg.dtype),
             rng.standard_normal((LD, B, cfg.hidden_size)).astype(cfg.dtype))
    y, (h, c) = model(x, state, lengths)
    y_t, _, cache = model.forward_train(x, state, lengths)
    dy = rng.standard_normal(y.shape).astype(cfg.dtype)
    dstate = (rng.standard_normal(h.shape).astype(cfg.dtype),
              rng.standard_normal(c.shape).astype(cfg.dtype))
    dx, (dh0, dc0), grads = model.backward(cache, dy, dstate)
    p64 = {k: v.astype(np.float64) for k, v in model.parameters().items()}
    f64 = (lambda a: np.asarray(a, np.float64))
    y_r, (h_r, c_r), saved = reference.lstm_forward(p64, cfg, f64(x), f64(state[0]),
                                                    f64(state[1]), lengths)
    dx_r, _, grads_r = reference.lstm_backward(p64, cfg, saved, f64(dy), f64(dstate[0]),
                                               f64(dstate[1]))
    tol = 1e-3 if cfg.dtype == np.float32 else 1e-9
    for got, want in [(y, y_r), (y_t, y_r), (h, h_r), (c, c_r), (dx, dx_r)] + \
            [(grads[k], grads_r[k]) for k in grads]:
        err = np.abs(got - want).max() / max(1.0, np.abs(want).max())
        assert err < tol, (model, err)


def pairwise(combos):
    """A subset of ``combos`` in which every pair of values of any two options still occurs
    together (a greedy covering array): a few dozen runs instead of all of them."""
    def pairs(c):
        return {(i, c[i], j, c[j]) for i in range(len(c)) for j in range(i + 1, len(c))}

    todo = set().union(*map(pairs, combos))
    chosen = []
    while todo:
        best = max(combos, key=lambda c: len(pairs(c) & todo))
        chosen.append(best)
        todo -= pairs(best)
    return chosen


def kernel_variants():
    """The compiled kernel variants this process can run (each is checked in turn)."""
    try:
        from lstmx import _dispatch
    except ImportError:  # a build with one kernel module
        return [None]
    return _dispatch.available()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="every combination of options")
    parser.add_argument("--no-threaded", action="store_true",
                        help="skip the OpenMP kernels at the sizes that take them (hours under "
                             "valgrind, which serialises threads; ASan runs them)")
    args = parser.parse_args(argv)
    from lstmx import _engine
    for variant in kernel_variants():
        if variant is not None:
            from lstmx import _dispatch
            _engine._kernels = _dispatch.load(variant)
            # The quantised kernels of the same variant (they follow the process's choice).
            quantized = importlib.import_module(
                _dispatch._MODULES[variant].replace("_kernels", "_quantized"))
            _dispatch.quantized = lambda module=quantized: module
        # Costs under which a team always pays: the threaded drivers then run on the threads
        # asked for, whatever a measurement under the sanitiser would say.
        _engine._kernels.set_plan_costs({n: {"barrier_s": 0.0, "fma_s": 1e-10}
                                         for n in range(1, 9)})
        parallel = variant in (None, "avx2", "avx512") and not args.no_threaded
        run_paths(args.full, parallel=parallel)
        run_regularised_paths()
        run_quantized_paths(parallel=not args.no_threaded)
        print(f"memcheck_paths: kernel variant {variant or 'the only one'}: OK")
    return 0


def run_paths(full, parallel):
    rng = np.random.default_rng(0)
    combos = list(itertools.product(
        [np.float32, np.float64],           # dtype
        [True, False],                      # bias
        [False, True],                      # peephole
        [0, 2],                             # proj_size
        ["tanh", "identity"],               # output_activation
        [False, True],                      # bidirectional
        [1, 2],                             # num_layers
        [False, True],                      # ragged lengths
    ))
    if not full:
        combos = pairwise(combos)
    n = 0
    for dtype, bias, peephole, proj, act, bidir, layers, ragged in combos:
        model = lstmx.LSTM(3, 4, num_layers=layers, bias=bias, bidirectional=bidir,
                           proj_size=proj, peephole=peephole, output_activation=act,
                           dtype=dtype, seed=n, batch_first=bool(n % 2))
        T, B = 4, 3
        lengths = [4, 1, 3] if ragged else None
        check(model, T, B, lengths, rng)
        n += 1
    for dtype in (np.float32, np.float64):
        # T = B = H = I = 1
        check(lstmx.LSTM(1, 1, dtype=dtype, seed=0), 1, 1, None, rng)
        # Inference chunks the input projection every 2**20 // (B * 4H) steps: 3 chunks here,
        # the last one partial, in both directions, with a projection and ragged lengths.
        model = lstmx.LSTM(2, 256, bidirectional=True, proj_size=3, dtype=dtype, seed=1)
        T = 2 * (2 ** 20 // (4 * 256)) + 5
        x = rng.standard_normal((T, 1, 2)).astype(dtype)
        y, (h, c) = model(x, lengths=[T - 7])
        y_t, (h_t, c_t), _ = model.forward_train(x, lengths=[T - 7])
        tol = 1e-4 if dtype == np.float32 else 1e-10
        for a, b in ((y, y_t), (h, h_t), (c, c_t)):  # chunked inference = one-block training
            assert np.abs(a - b).max() < tol
        # LSTMCell, forward and backward
        cell = lstmx.LSTMCell(3, 4, peephole=True, dtype=dtype, seed=0)
        (hc, cc), cache = cell.forward_train(np.ones((2, 3), dtype))
        cell.backward(cache, (np.ones((2, 4), dtype), None))
        cell(np.ones((2, 3), dtype), (hc, cc))
        n += 3
    # The per-hidden-unit OpenMP kernels of AVX2 and AVX-512 builds (a team on 2 threads: see
    # the pinned plan costs in main), partial row tile and strip (B = 9, H = 136), four backward chunks
    # (256 rows // B = 28 steps), ragged lengths, both directions: side by side on 2
    # threads, one after the other on 4 threads each; and a projection's recurrent products
    # on packed U.T and R.T (B * 4H * P past SMALL_PRODUCT, partial strips and row tile).
    # Only the AVX2 and AVX-512 variants have them.
    if parallel:
        from threadpoolctl import threadpool_limits
        for dtype in (np.float32, np.float64):
            model = lstmx.LSTM(20, 70, proj_size=33, bidirectional=True, peephole=True,
                               dtype=dtype, seed=3)
            check(model, 5, 37, [5, 2] * 18 + [4], rng)
            n += 1
        for threads in (2, 4):
            with threadpool_limits(threads, user_api="openmp"):
                model = lstmx.LSTM(300, 136, bidirectional=True, peephole=True,
                                   dtype=np.float32, seed=2)
                check(model, 110, 9, [110, 3, 60, 109, 1, 110, 50, 7, 108], rng)
                n += 1
    # Two threads inside the kernels at once.
    model = lstmx.LSTM(3, 8, bidirectional=True, dtype=np.float64, seed=0)
    errors = []

    def work(seed):
        try:
            check(model, 6, 2, [6, 3], np.random.default_rng(seed))
        except BaseException as err:  # reported below; a thread cannot fail the process
            errors.append(err)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def run_regularised_paths():
    """The regularised driver and dropout between layers, training with seeded masks and
    inference, against lstmx.reference_regularised with the same masks."""
    from lstmx import _masks, reference_regularised
    rng = np.random.default_rng(4)
    options = [
        dict(layer_norm=True, peephole=True, output_activation="identity"),
        dict(zoneout=(0.2, 0.3), recurrent_dropout=0.3, cell_clip=0.5, proj_size=2),
        dict(dropout=0.4, num_layers=2, bidirectional=True, layer_norm=True, zoneout=0.1),
        dict(recurrent_dropout=0.2, reverse=True, bias=False, batch_first=True),
    ]
    for dtype in (np.float32, np.float64):
        for n, opts in enumerate(options):
            model = lstmx.LSTM(3, 5, dtype=dtype, seed=n, **opts)
            cfg, T, B = model.config, 5, 3
            lengths = [5, 2, 4]
            shape = (B, T, 3) if cfg.batch_first else (T, B, 3)
            x = rng.standard_normal(shape).astype(dtype)
            y, _ = model(x, lengths=lengths)
            y_t, _, cache = model.forward_train(x, lengths=lengths, rng=n)
            dy = rng.standard_normal(y_t.shape).astype(dtype)
            dx, _, grads = model.backward(cache, dy)
            p64 = {k: v.astype(np.float64) for k, v in model.parameters().items()}
            masks = _masks.draw(cfg, T, B, n)
            LD = cfg.num_layers * cfg.num_directions
            if masks is None:  # options that draw nothing: training without masks
                masks = _masks.Masks([None] * (cfg.num_layers - 1), [None] * LD,
                                     [None] * LD, [None] * LD)
            m64 = _masks.Masks(*([None if a is None else np.asarray(a, np.float64)
                                  for a in part] for part in masks))
            x64 = x.astype(np.float64)
            y_r = reference_regularised.lstm_forward(p64, cfg, x64, None, None, lengths)[0]
            y_tr, _, saved = reference_regularised.lstm_forward(p64, cfg, x64, None, None,
                                                                lengths, m64)
            dx_r, _, grads_r = reference_regularised.lstm_backward(
                p64, cfg, saved, dy.astype(np.float64), None, None)
            tol = 1e-3 if dtype == np.float32 else 1e-9
            for got, want in [(y, y_r), (y_t, y_tr), (dx, dx_r)] + \
                    [(grads[k], grads_r[k]) for k in grads]:
                err = np.abs(got - want).max() / max(1.0, np.abs(want).max())
                assert err < tol, (opts, err)
        cell = lstmx.LSTMCell(3, 4, zoneout=0.2, layer_norm=True, cell_clip=1.0, dtype=dtype,
                              seed=0)
        (h, c), cache = cell.forward_train(np.ones((2, 3), dtype), rng=1)
        cell.backward(cache, (np.ones((2, 4), dtype), None))
        cell(np.ones((2, 3), dtype), (h, c))


def run_quantized_paths(parallel):
    """The quantised models, int8 and bfloat16, against lstmx.reference_quantized: one and
    two layers and directions, projection, peepholes, identity output, batch_first, ragged
    lengths, a cell; with ``parallel``, products big enough to be split between threads.

    This is a memory check, not the accuracy test (tests/test_quantized.py): a wrong read
    gives errors of order one, while a product rounded one quantisation level apart (where
    the float parts differ in a last bit, as under valgrind's emulated FMA) stays below
    1e-2 at these sizes."""
    from lstmx import reference_quantized
    rng = np.random.default_rng(5)
    options = [dict(), dict(bidirectional=True, num_layers=2),
               dict(proj_size=2, peephole=True), dict(output_activation="identity",
                                                      batch_first=True, bidirectional=True)]
    # (5, 17, 3, 7): channels past the last whole vector (masked loads and stores of the
    # AVX-512 dot-product tiles) and a row tile of 1.
    sizes = [(3, 4, 4, 3), (5, 17, 3, 7)] + ([(64, 256, 4, 16)] if parallel else [])
    for mode in ("int8", "bfloat16"):
        for I, H, T, B in sizes:
            for n, opts in enumerate(options if I == 3 else options[:1]):
                q = lstmx.LSTM(I, H, seed=n, **opts).quantize(mode)
                shape = (B, T, I) if opts.get("batch_first") else (T, B, I)
                x = rng.standard_normal(shape).astype(np.float32)
                lengths = np.maximum(1, T - np.arange(B) % T)
                y, (h, c) = q(x, lengths=lengths)
                y_r, (h_r, c_r) = reference_quantized.lstm_forward(
                    q.state_dict(), q.config, mode, x, lengths=lengths)
                for got, want in ((y, y_r), (h, h_r), (c, c_r)):
                    err = np.abs(np.asarray(got) - want).max() / max(1.0, np.abs(want).max())
                    assert err < 1e-2, (mode, opts, err)
        cell = lstmx.LSTMCell(3, 4, peephole=True, seed=0).quantize(mode)
        h, c = cell(rng.standard_normal((2, 3)).astype(np.float32))
        assert np.isfinite(h).all() and np.isfinite(c).all()


if __name__ == "__main__":
    sys.exit(main())
