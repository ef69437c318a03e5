"""Table and plot of the char-LM runs of docs/regularisation.md, from their JSON files.

Each ``*.json`` here is one ``examples/char_lm.py --json`` run (the commands are in
docs/regularisation.md). Prints the Markdown table of the page and writes its plot,
``docs/_static/regularisation_char_lm.png``: the held-out and the training text's bits per
character over the steps, one colour per run.

    python benchmarks/results/2026-11-26-regularisation-char-lm/summarise.py
"""
import glob
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
PLOT = os.path.join(HERE, "..", "..", "..", "docs", "_static", "regularisation_char_lm.png")
ORDER = ["plain", "recurrent-dropout", "zoneout", "layer-norm", "cell-clip",
         "layer-norm+recurrent-dropout", "2-layers", "2-layers+dropout"]


def load():
    runs = {}
    for path in glob.glob(os.path.join(HERE, "*.json")):
        with open(path) as f:
            runs[os.path.basename(path)[:-5]] = json.load(f)
    return dict(sorted(runs.items(), key=lambda kv: (ORDER.index(kv[0]) if kv[0] in ORDER
                                                      else len(ORDER), kv[0])))


def table(runs):
    plain = runs.get("plain", {}).get("test_bits")
    lines = ["| run | LSTM options | held-out bits/char | vs plain | best held-out on the "
             "watched slice (step) | training text at the end | time |",
             "|---|---|--:|--:|--:|--:|--:|"]
    for name, r in runs.items():
        c = r["curve"]
        best = min(range(len(c["step"])), key=lambda i: c["valid_bits"][i])
        options = ", ".join(f"`{k}={tuple(v) if isinstance(v, list) else v}`"
                            for k, v in r["lstm_options"].items()) or "none"
        delta = "" if plain is None else f"{r['test_bits'] - plain:+.3f}"
        lines.append(f"| {name} | {options} | {r['test_bits']:.3f} | {delta} | "
                     f"{c['valid_bits'][best]:.3f} ({c['step'][best]}) | "
                     f"{c['train_eval_bits'][-1]:.3f} | {r['seconds']:.0f} s |")
    return "\n".join(lines)


def plot(runs):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.subplots()
    for i, (name, r) in enumerate(runs.items()):
        c = r["curve"]
        ax.plot(c["step"], c["valid_bits"], color=f"C{i}", label=f"{name}: held-out")
        ax.plot(c["step"], c["train_eval_bits"], color=f"C{i}", linestyle=":",
                label=f"{name}: training text")
    ax.set(xlabel="step", ylabel="bits per character",
           title="Character LM, small corpus: held-out (solid) and training text (dotted)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    os.makedirs(os.path.dirname(PLOT), exist_ok=True)
    fig.savefig(PLOT, dpi=90)
    return os.path.normpath(PLOT)


if __name__ == "__main__":
    runs = load()
    print(table(runs))
    print(f"\nplot: {plot(runs)}")
