"""A character-level language model of Python's own standard library sources.

The corpus ships with every Python: the source files of a fixed list of standard-library
modules (found under ``sysconfig.get_paths()["stdlib"]``) for training, and of five other
modules, never seen in training, for the held-out test. Characters outside printable ASCII
and newline map to one "other" symbol (97 symbols in all).

Model: ``Embedding(97, embed)``, ``LSTM(embed, hidden)`` and a ``Linear(hidden, 97)`` readout,
trained on the softmax cross-entropy of the next character by truncated backpropagation
through time: the training text is cut into ``batch`` parallel streams
(``lstmx.bptt.batchify``) walked in chunks of ``seq_len`` characters (``bptt_chunks``), the
LSTM state carried from chunk to chunk. Adam with a cosine-decaying learning rate and
gradient clipping. The result is bits per character on the held-out modules, against the
entropy of their own character frequencies (the best any unigram model can score on them),
and a sample drawn from the trained model with a temperature.

The exact corpus depends on the Python version, so numbers move a little between versions.

Measured (float32, 2 shared cores, Python 3.11, defaults: embed 32, hidden 256, batch 32,
seq_len 100, 2000 steps (4.1 passes over 1,547,811 training characters), Adam lr 3e-3
decaying to 3e-4, gradient norm clipped at 1.0, seed 0): 2.21 bits per character on the
99,960 held-out characters, against 4.45 for their unigram entropy, in 378 s. A sample
(temperature 0.7, prompt "def ") reads like Python: indented ``def`` and ``if`` blocks,
``self``, ``isinstance``, comments and docstrings of English-like words, ``raise
TypeError(...)``, with invented names.

Run::

    python examples/char_lm.py
    python examples/char_lm.py --steps 6000 --hidden 512   # larger (not measured here)

Reduced precision: ``--save-model PATH`` keeps the trained model, and ``--quantize
int8,bfloat16`` scores the held-out text again with the LSTM quantised (``LSTM.quantize``; the
embedding and readout stay float32), after training or for a model loaded with
``--load-model PATH`` (no training). Measured: a model trained with ``--steps 1200`` (2.3377
bits per character) scores 2.3376 in int8 and in bfloat16, within 0.004% of float32 (the
table is in ``docs/quantization.md``)::

    python examples/char_lm.py --steps 1200 --save-model char_lm.npz
    python examples/char_lm.py --load-model char_lm.npz --quantize int8,bfloat16

The LSTM's regularisation and normalisation options have flags (``--layers``, ``--dropout``,
``--recurrent-dropout``, ``--zoneout``, ``--layer-norm``, ``--cell-clip``) and ``--json``
keeps a run's curves; docs/regularisation.md compares them at a size where the plain model
overfits::

    python examples/char_lm.py --hidden 256 --batch 16 --seq-len 64 --max-train-chars 60000 \
        --steps 1500 --recurrent-dropout 0.25 --json recurrent-dropout.json
"""
from __future__ import annotations

import json
import os
import sysconfig

import numpy as np

import _common
import lstmx
from lstmx.bptt import batchify, bptt_chunks
from lstmx.losses import cross_entropy
from lstmx.optim import Adam, clip_grad_norm

TRAIN_MODULES = ["argparse", "ast", "calendar", "collections", "configparser", "csv",
                 "dataclasses", "difflib", "enum", "functools", "gettext", "inspect",
                 "ipaddress", "locale", "logging", "pprint", "random", "shutil", "statistics",
                 "subprocess", "tarfile", "threading", "tokenize", "traceback", "typing"]
TEST_MODULES = ["textwrap", "heapq", "fractions", "json.encoder", "json.decoder"]

ALPHABET = "\n" + "".join(chr(c) for c in range(32, 127))
OTHER = len(ALPHABET)  # one symbol for every other character
VOCAB = len(ALPHABET) + 1
_CODES = np.full(0x110000, OTHER, dtype=np.uint8)
_CODES[[ord(c) for c in ALPHABET]] = np.arange(len(ALPHABET))


def module_source(name):
    """The source text of a pure-Python standard-library module (or package)."""
    root = os.path.join(sysconfig.get_paths()["stdlib"], *name.split("."))
    for path in (root + ".py", os.path.join(root, "__init__.py")):
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return f.read()
    raise FileNotFoundError(f"no source for the standard-library module {name!r} under "
                            f"{os.path.dirname(root)}")


def encode(text):
    """Character codes (N,) uint8 of ``text``."""
    return _CODES[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)]


def decode(codes):
    return "".join(ALPHABET[c] if c < OTHER else "?" for c in codes)


def corpus(modules, max_chars=None):
    codes = encode("\n".join(module_source(m) for m in modules))
    return codes if max_chars is None else codes[:max_chars]


def unigram_bits(codes):
    """Entropy (bits) of the character frequencies of ``codes``."""
    p = np.bincount(codes, minlength=VOCAB) / len(codes)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


class CharLM:
    """Embedding -> LSTM -> Linear, with the training step and evaluation of the example.

    ``lstm_options`` go to ``lstmx.LSTM`` (``num_layers``, ``dropout``, ``layer_norm``, ...);
    training draws the dropout and zoneout masks from a generator seeded with ``seed``.
    """

    def __init__(self, embed, hidden, seed, lstm_options=None):
        self.emb = lstmx.Embedding(VOCAB, embed, seed=seed)
        self.lstm = lstmx.LSTM(embed, hidden, seed=seed, init="keras", **(lstm_options or {}))
        self.head = lstmx.Linear(hidden, VOCAB, seed=seed)
        self.modules = [self.emb, self.lstm, self.head]
        self.rng = np.random.default_rng(seed)

    def parameters(self):
        return [m.parameters() for m in self.modules]

    def logits(self, x, state=None, lstm=None):
        """Logits and the LSTM's final state; ``lstm`` replaces the model's own LSTM (a
        quantised copy of it, say)."""
        y, state = (self.lstm if lstm is None else lstm)(self.emb(x), state)
        return self.head(y), state

    def gradients(self, x, target, state):
        """Loss (nats per character), gradients and the final state of one chunk."""
        e, e_cache = self.emb.forward_train(x)
        y, state, l_cache = self.lstm.forward_train(e, state, rng=self.rng)
        logits, h_cache = self.head.forward_train(y)
        loss, dlogits = cross_entropy(logits, target)
        dy, g_head = self.head.backward(h_cache, dlogits)
        de, _, g_lstm = self.lstm.backward(l_cache, dy)
        return loss, [self.emb.backward(e_cache, de), g_lstm, g_head], state

    def bits_per_char(self, codes, batch=16, seq_len=512, lstm=None):
        """Mean bits per character of predicting each character of ``codes`` from the ones
        before it, over ``batch`` consecutive pieces (each from a zero state); ``lstm`` as
        in ``logits``."""
        data = batchify(codes, batch)
        total, count, state = 0.0, 0, None
        for x, y in bptt_chunks(data[:-1], data[1:], seq_len=seq_len):
            logits, state = self.logits(x, state, lstm)
            total += cross_entropy(logits, y, reduction="sum")[0]
            count += y.size
        return total / count / np.log(2)

    def sample(self, rng, prompt, length, temperature):
        """``prompt`` followed by ``length`` characters drawn from the model."""
        codes = list(encode(prompt))
        logits, state = self.logits(np.array(codes)[:, None])
        for _ in range(length):
            z = logits[-1, 0].astype(np.float64) / temperature
            p = np.exp(z - z.max())
            codes.append(int(rng.choice(VOCAB, p=p / p.sum())))
            logits, state = self.logits(np.array([[codes[-1]]]), state)
        return decode(codes)


def train(hidden=256, embed=32, batch=32, seq_len=100, steps=2000, lr=3e-3, clip=1.0,
          eval_every=100, max_train_chars=None, valid_chars=20000, seed=0, progress=True,
          lstm_options=None):
    """Train the model; returns a dict of the result, the learning curves and the model."""
    train_codes = corpus(TRAIN_MODULES, max_train_chars)
    test_codes = corpus(TEST_MODULES)
    valid_codes = test_codes[:valid_chars]  # a slice of the held-out text to watch
    model = CharLM(embed, hidden, seed, lstm_options)
    opt = Adam(model.parameters(), lr=lr)
    data = batchify(train_codes, batch)
    chunks = bptt_chunks(data[:-1], data[1:], seq_len=seq_len)

    clock = _common.Stopwatch()
    # The training text is scored too, at inference (no dropout), so that the curves show
    # overfitting: the gap between what the model fits and what it generalises to.
    fit_codes = train_codes[:valid_chars]
    curve = {"step": [], "valid_bits": [], "train_eval_bits": []}
    train_bits = []
    bar = _common.progress(steps, f"char LM H={hidden}", disable=not progress)
    state = None
    for step in range(1, steps + 1):
        i = (step - 1) % len(chunks)
        if i == 0:
            state = None  # a new pass over the text
        x, target = chunks[i]
        # Cosine decay to a tenth of the learning rate over the run.
        opt.lr = lr * (0.1 + 0.45 * (1 + np.cos(np.pi * (step - 1) / steps)))
        loss, grads, state = model.gradients(x, target, state)
        clip_grad_norm(grads, clip)
        opt.step(grads)
        train_bits.append(loss / np.log(2))
        bar.update()
        if step % eval_every == 0 or step == steps:
            curve["step"].append(step)
            curve["valid_bits"].append(model.bits_per_char(valid_codes))
            curve["train_eval_bits"].append(model.bits_per_char(fit_codes))
            bar.set_postfix(train=f"{np.mean(train_bits[-eval_every:]):.3f}",
                            valid=f"{curve['valid_bits'][-1]:.3f}")
    bar.close()
    train_seconds = clock()
    return {"test_bits": model.bits_per_char(test_codes), "unigram_bits": unigram_bits(test_codes),
            "train_chars": len(train_codes), "test_chars": len(test_codes), "steps": steps,
            "epochs": steps / len(chunks), "seconds": train_seconds, "curve": curve,
            "train_bits": train_bits, "model": model, "lstm_options": dict(lstm_options or {})}


def add_regularisation_arguments(parser):
    """The LSTM's regularisation and normalisation options (docs/regularisation.md)."""
    group = parser.add_argument_group("regularisation and normalisation of the LSTM")
    group.add_argument("--layers", type=int, default=1, help="stacked LSTM layers")
    group.add_argument("--dropout", type=float, default=0.0,
                       help="dropout between stacked layers (needs --layers 2 or more)")
    group.add_argument("--recurrent-dropout", type=float, default=0.0,
                       help="variational dropout of h_{t-1}, one mask per sequence")
    group.add_argument("--zoneout", type=float, nargs="+", default=[0.0],
                       metavar="P", help="zoneout probability, or two: p_c p_h")
    group.add_argument("--layer-norm", action="store_true", help="layer-normalised LSTM")
    group.add_argument("--cell-clip", type=float, default=None, help="clip c_t to [-c, c]")


def regularisation_options(args):
    """``lstmx.LSTM`` keyword arguments from the options of ``add_regularisation_arguments``,
    only those that differ from the plain LSTM's."""
    if len(args.zoneout) > 2:
        raise SystemExit(f"--zoneout takes one or two probabilities; got {args.zoneout}")
    zoneout = args.zoneout[0] if len(args.zoneout) == 1 else tuple(args.zoneout)
    options = dict(num_layers=args.layers, dropout=args.dropout,
                   recurrent_dropout=args.recurrent_dropout, zoneout=zoneout,
                   layer_norm=args.layer_norm, cell_clip=args.cell_clip)
    plain = dict(num_layers=1, dropout=0.0, recurrent_dropout=0.0, zoneout=0.0,
                 layer_norm=False, cell_clip=None)
    return {k: v for k, v in options.items() if v != plain[k]}


def write_json(path, r, args):
    """The result, the curves and the command line's options, as JSON."""
    import json
    import platform

    keep = ("test_bits", "unigram_bits", "train_chars", "test_chars", "steps", "epochs",
            "seconds", "curve", "train_bits", "lstm_options")
    doc = {k: r[k] for k in keep}
    doc["args"] = {k: v for k, v in vars(args).items() if k not in ("out", "json")}
    if r.get("quantized"):  # --quantize: its results too, keyed as report_quantized's
        doc["quantized"] = r["quantized"]
        doc["bits_per_char"] = r["quantized"]["bits_per_char"]
    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    doc["machine"] = {"cpu": cpu, "python": platform.python_version(),
                      "lstmx": lstmx.__version__}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, default=float)
    return path


def _describe(options):
    return "".join(f" {k}={v}" for k, v in options.items())


def main(argv=None):
    parser = _common.make_parser(__doc__)
    parser.add_argument("--hidden", type=int, default=256, help="LSTM hidden size")
    parser.add_argument("--embed", type=int, default=32, help="character embedding size")
    parser.add_argument("--batch", type=int, default=32, help="parallel streams")
    parser.add_argument("--seq-len", type=int, default=100, help="truncated BPTT length")
    parser.add_argument("--steps", type=int, default=2000, help="training steps")
    parser.add_argument("--lr", type=float, default=3e-3, help="initial Adam learning rate")
    parser.add_argument("--clip", type=float, default=1.0, help="gradient norm clip")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between checks")
    parser.add_argument("--max-train-chars", type=int, default=None,
                        help="use only the start of the training text")
    parser.add_argument("--valid-chars", type=int, default=20000,
                        help="held-out characters scored during training (all at the end)")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature")
    parser.add_argument("--sample-chars", type=int, default=600, help="characters to sample")
    parser.add_argument("--prompt", default="def ", help="start of the sample")
    add_regularisation_arguments(parser)
    add_quantize_arguments(parser)
    args = parser.parse_args(argv)
    if args.load_model:
        return evaluate_saved(args)
    options = regularisation_options(args)
    with _common.blas_threads(args.threads):
        r = train(args.hidden, args.embed, args.batch, args.seq_len, args.steps, args.lr,
                  args.clip, args.eval_every, args.max_train_chars, args.valid_chars,
                  args.seed, not args.no_progress, options)
        r["sample"] = r["model"].sample(np.random.default_rng(args.seed), args.prompt,
                                        args.sample_chars, args.temperature)
    bits = np.asarray(r["train_bits"])
    w = min(50, len(bits))
    smooth = np.convolve(bits, np.ones(w) / w, mode="valid")
    # The curve watches the start of the held-out text; the result (printed below) scores
    # all of it: drawn as its own point at the last step, labelled with the printed value.
    result = f"held-out, all {r['test_chars']} characters: {r['test_bits']:.3f} (the result)"
    r["plot"] = _common.save_curve(
        os.path.join(args.out, "char_lm.png"),
        {f"train (mean of {w} steps)": (np.arange(w, len(bits) + 1), smooth),
         f"held-out, first {args.valid_chars} characters": (r["curve"]["step"],
                                                             r["curve"]["valid_bits"]),
         f"training text, first {args.valid_chars} characters (inference)": (
             r["curve"]["step"], r["curve"]["train_eval_bits"]),
         result: ([r["steps"]], [r["test_bits"]])},
        "step", "bits per character",
        f"Character LM of stdlib sources, H = {args.hidden}{_describe(options)}",
        hlines={f"unigram baseline, all {r['test_chars']} held-out characters":
                r["unigram_bits"]},
        logy=False, styles={result: dict(marker="*", markersize=12, linestyle="none",
                                         color="k")})
    print(f"plot: {r['plot']}")
    print(f"--- sample (temperature {args.temperature}) ---")
    print(r["sample"])
    print("---")
    if args.json:
        print(f"json: {write_json(args.json, r, args)}")
    print(f"char LM H={args.hidden}{_describe(options)}: {r['test_bits']:.3f} bits/char on "
          f"{r['test_chars']} "
          f"held-out characters (unigram baseline {r['unigram_bits']:.3f}) after "
          f"{r['steps']} steps ({r['epochs']:.2f} epochs of {r['train_chars']} characters) in "
          f"{r['seconds']:.0f} s")
    if args.save_model:
        save_model(r["model"], args.save_model)
        print(f"model: {args.save_model}")
    if args.quantize:
        with _common.blas_threads(args.threads):
            r["quantized"] = report_quantized(r["model"], args)
        if args.json:  # one file for both: the run's result, curves and the precisions'
            write_json(args.json, r, args)
    return r


# -- reduced precision: the trained model's held-out bits/char in float32, int8, bfloat16 --

MODES = ("int8", "bfloat16")


def add_quantize_arguments(parser):
    parser.add_argument("--save-model", metavar="PATH",
                        help="save the trained model (an lstmx.checkpoint archive)")
    parser.add_argument("--load-model", metavar="PATH",
                        help="evaluate a model saved with --save-model instead of training "
                             "one (--embed and --hidden must be its sizes)")
    parser.add_argument("--quantize", metavar="MODES", default="",
                        help="also score the held-out text with the LSTM quantised, "
                             f"comma-separated modes of {','.join(MODES)}")
    parser.add_argument("--json", metavar="PATH",
                        help="write the run's result and curves here (with --quantize, also "
                             "the bits/char of each precision; with --load-model, only those)")


def save_model(model, path):
    lstmx.checkpoint.save(path, modules={"embedding": model.emb, "lstm": model.lstm,
                                         "head": model.head})


def load_model(path, embed, hidden):
    model = CharLM(embed, hidden, seed=0)
    lstmx.checkpoint.load(path, modules={"embedding": model.emb, "lstm": model.lstm,
                                         "head": model.head})
    return model


def quantized_bits(model, codes, modes):
    """Held-out bits/char of ``model`` as trained (float32) and with its LSTM quantised to
    each of ``modes`` (``LSTM.quantize``); the embedding and readout stay float32."""
    bits = {"float32": model.bits_per_char(codes)}
    for mode in modes:
        bits[mode] = model.bits_per_char(codes, lstm=model.lstm.quantize(mode))
    return bits


def _modes(text):
    modes = [m for m in text.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise SystemExit(f"--quantize takes comma-separated modes of {list(MODES)}; "
                         f"got {text!r}")
    return modes


def report_quantized(model, args):
    """Score the held-out text in each precision, print the table, write --json."""
    modes = _modes(args.quantize)
    codes = corpus(TEST_MODULES)
    clock = _common.Stopwatch()
    bits = quantized_bits(model, codes, modes)
    result = {"test_chars": len(codes), "bits_per_char": bits,
              "relative_change": {m: bits[m] / bits["float32"] - 1 for m in modes},
              "hidden": model.lstm.config.hidden_size, "embed": model.emb.embedding_dim,
              "seconds": clock()}
    print(f"held-out bits/char, all {len(codes)} characters: " + ", ".join(
        f"{m} {b:.4f}" + ("" if m == "float32" else
                          f" ({100 * result['relative_change'][m]:+.4f}%)")
        for m, b in bits.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


def evaluate_saved(args):
    """--load-model: score a saved model (no training, no plot)."""
    model = load_model(args.load_model, args.embed, args.hidden)
    if not args.quantize:
        args.quantize = ",".join(MODES)
    with _common.blas_threads(args.threads):
        return {"model": model, "quantized": report_quantized(model, args)}


if __name__ == "__main__":
    main()
