"""The docs say what the code does: documented shapes are the real ones, documented code runs.

- The shape tables of ``docs/equations.md`` (parameters, inputs and outputs of ``LSTM`` and
  ``LSTMCell``) against real models of many configurations.
- The shapes that the docstrings give for parameters (``LSTM``, ``LSTMCell``, ``Linear``,
  ``Embedding``) against the real ones.
- Every ``python`` block of the tutorial, the install page and the front page runs, in order,
  and prints what the ``text`` block under it shows.
- The examples gallery (``docs/_ext/lstmx_docs.py``, plain Python) writes a page per example,
  with the plot only when it exists.

None of this needs Sphinx; building the pages is ``.ci/docs.sh``.
"""
import contextlib
import io
import itertools
import os
import re
import sys

import numpy as np
import pytest

import lstmx
from _helpers import require

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")

# Sizes all different, so that a shape with the wrong symbol cannot pass by coincidence.
I, H, P = 3, 5, 2
CONFIGS = [
    dict(),
    dict(bias=False),
    dict(num_layers=3),
    dict(bidirectional=True),
    dict(num_layers=2, bidirectional=True),
    dict(proj_size=P),
    dict(peephole=True),
    dict(num_layers=2, bidirectional=True, proj_size=P, peephole=True),
    dict(num_layers=2, bidirectional=True, layer_norm=True, dropout=0.2, zoneout=0.1),
    dict(num_layers=3, bidirectional=True, proj_size=P, peephole=True, bias=False,
         batch_first=True, output_activation="identity"),
    dict(num_layers=2, batch_first=True, dtype=np.float64),
]
CELL_CONFIGS = [dict(), dict(bias=False), dict(peephole=True),
                dict(peephole=True, bias=False, dtype=np.float64),
                dict(peephole=True, layer_norm=True)]

LAYER_NORM_NAMES = {f"layer_norm_{part}_{kind}" for part in ("ih", "hh", "c")
                    for kind in ("weight", "bias")}


def read(name):
    with open(os.path.join(DOCS, name), encoding="utf-8") as f:
        return f.read()


# --- reading the docs ----------------------------------------------------------------------

def markdown_tables(text):
    """Every pipe table of a Markdown text: a list of (header cells, rows of cells)."""
    tables, lines = [], text.splitlines()
    for i in range(len(lines) - 1):
        if (lines[i].startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1])
                and (i == 0 or not lines[i - 1].startswith("|"))):
            rows = []
            for line in itertools.takewhile(lambda s: s.startswith("|"), lines[i + 2:]):
                rows.append([c.strip() for c in line.strip().strip("|").split("|")])
            tables.append(([c.strip() for c in lines[i].strip().strip("|").split("|")], rows))
    return tables


def table(text, first_header):
    found = [rows for header, rows in markdown_tables(text) if header[0] == first_header]
    assert len(found) == 1, f"expected one table headed {first_header!r}; found {len(found)}"
    return found[0]


def code_names(cell):
    """The ``code`` names of a table cell: "`x`, `dx`" -> ["x", "dx"]."""
    names = re.findall(r"`([^`]+)`", cell)
    assert names, f"no `name` in table cell {cell!r}"
    return names


def shape(expr, sizes):
    """Evaluate a documented shape such as "(4H, D·H_out)" with the given sizes."""
    expr = expr.strip().strip("`").replace("·", "*")
    expr = re.sub(r"(\d)([A-Za-z])", r"\1*\2", expr)  # 4H -> 4*H
    assert re.fullmatch(r"[\w\s()*,+-]*", expr), f"not a shape: {expr!r}"
    value = eval(expr, {"__builtins__": {}}, dict(sizes))  # noqa: S307 (our own docs)
    return tuple(value) if isinstance(value, tuple) else (value,)


def sizes_of(cfg, T=None, B=None):
    d = dict(I=cfg.input_size, H=cfg.hidden_size, P=cfg.proj_size, H_out=cfg.output_size,
             D=cfg.num_directions, L=cfg.num_layers)
    if T is not None:
        d.update(T=T, B=B)
    return d


def documented_parameters(cfg):
    """The parameter names and shapes that equations.md's table gives for ``cfg``, in order."""
    rows = table(read("equations.md"), "parameter")
    sizes = sizes_of(cfg)
    options = {f: getattr(cfg, f) for f in ("bias", "proj_size", "peephole", "num_layers",
                                            "bidirectional", "layer_norm")}
    literal = {row[0].strip("`") for row in rows if "{k}" not in row[0]}
    out = {}
    for k in range(cfg.num_layers):
        for d in range(cfg.num_directions):
            for name, _symbol, shp, when in rows:
                name = name.strip("`")
                if "{k}" in name:
                    name = name.replace("{k}", str(k))
                    if name in literal:  # a row for this very layer takes precedence
                        continue
                elif name != f"{name.rsplit('_l', 1)[0]}_l{k}":
                    continue
                present = when == "always" or eval(when.strip("`"), {"__builtins__": {}},
                                                    options)  # noqa: S307
                if present:
                    out[name + ("_reverse" if d else "")] = shape(shp, sizes)
    return out


def docstring_shapes(doc):
    """``name`` (shape) statements of a docstring: "``a`` and ``b`` (4H,)" -> a, b: "(4H,)"."""
    found = {}
    # A shape is a tuple: parentheses around a comma ("(without projection)" is not one).
    pattern = r"((?:``\w+(?:\{\w\})?``(?:,\s*|\s+and\s+)?)+)\s*(\([^(),]*,[^()]*\))"
    for names, shp in re.findall(pattern, doc):
        for name in re.findall(r"``(\w+(?:\{\w\})?)``", names):
            found[name] = shp
    return found


# --- shapes: equations.md --------------------------------------------------------------------

@pytest.mark.parametrize("options", CONFIGS, ids=str)
def test_parameter_table_is_the_state_dict(options):
    lstm = lstmx.LSTM(I, H, seed=0, **options)
    real = {name: value.shape for name, value in lstm.state_dict().items()}
    documented = documented_parameters(lstm.config)
    assert documented == real
    assert list(documented) == list(real)  # the documented order is state_dict()'s
    assert real == lstm.config.parameter_shapes()


@pytest.mark.parametrize("options", CELL_CONFIGS, ids=str)
def test_cell_parameters_are_one_layer_without_suffix(options):
    cell = lstmx.LSTMCell(I, H, seed=0, **options)
    layer = documented_parameters(lstmx.LSTMConfig(I, H, **options))
    assert {name: value.shape for name, value in cell.state_dict().items()} == \
        {name.removesuffix("_l0"): shp for name, shp in layer.items()}


@pytest.mark.parametrize("options", CONFIGS, ids=str)
def test_input_output_table_is_the_real_shapes(options):
    T, B = 4, 6
    lstm = lstmx.LSTM(I, H, seed=0, **options)
    cfg = lstm.config
    rng = np.random.default_rng(0)
    LD = cfg.num_layers * cfg.num_directions
    x = rng.standard_normal((B, T, I) if cfg.batch_first else (T, B, I))
    h0 = rng.standard_normal((LD, B, cfg.output_size))
    c0 = rng.standard_normal((LD, B, H))
    lengths = np.array([T, 1, 2, T, 3, T])
    y, (h_n, c_n), cache = lstm.forward_train(x, (h0, c0), lengths)
    dy, dh_n, dc_n = np.ones_like(y), np.ones_like(h_n), np.ones_like(c_n)
    dx, (dh0, dc0), _ = lstm.backward(cache, dy, (dh_n, dc_n))
    arrays = dict(x=x, dx=dx, y=y, dy=dy, h0=h0, h_n=h_n, dh0=dh0, dh_n=dh_n, c0=c0,
                  c_n=c_n, dc0=dc0, dc_n=dc_n, lengths=lengths)
    column = 2 if cfg.batch_first else 1
    rows = table(read("equations.md"), "array")
    seen = set()
    for row in rows:
        for name in code_names(row[0]):
            assert arrays[name].shape == shape(row[column], sizes_of(cfg, T, B)), name
            seen.add(name)
    assert seen == set(arrays)


@pytest.mark.parametrize("options", CELL_CONFIGS, ids=str)
def test_cell_input_output_table_is_the_real_shapes(options):
    B = 4
    cell = lstmx.LSTMCell(I, H, seed=0, **options)
    x = np.ones((B, I))
    (h, c), cache = cell.forward_train(x, (np.zeros((B, H)), np.zeros((B, H))))
    dx, (dh, dc), _ = cell.backward(cache, (np.ones_like(h), np.ones_like(c)))
    arrays = dict(x=x, dx=dx, h=h, c=c, dh=dh, dc=dc)
    seen = set()
    for row in table(read("equations.md"), "cell array"):
        for name in code_names(row[0]):
            assert arrays[name].shape == shape(row[1], sizes_of(cell.config, B=B, T=1)), name
            seen.add(name)
    assert seen == set(arrays)


def test_table_parser_reads_what_it_should():
    # A guard on the helpers above: a table the parser missed would check nothing.
    tables = markdown_tables("text\n\n| a | b |\n|---|---|\n| `x` | `(4H, D·H_out)` |\n\nend")
    assert tables == [(["a", "b"], [["`x`", "`(4H, D·H_out)`"]])]
    assert shape("`(4H, D·H_out)`", dict(H=5, D=2, H_out=3)) == (20, 6)
    assert shape("`(4H,)`", dict(H=5)) == (20,)
    assert docstring_shapes("``a{s}`` and ``b`` (4H,), ``c_l{k}``, ``d`` (P, H)") == \
        {"a{s}": "(4H,)", "b": "(4H,)", "c_l{k}": "(P, H)", "d": "(P, H)"}


# --- shapes: docstrings ----------------------------------------------------------------------

@pytest.mark.parametrize("options", CONFIGS, ids=str)
def test_lstm_docstring_parameter_shapes(options):
    lstm = lstmx.LSTM(I, H, seed=0, **options)
    cfg = lstm.config
    real = {name: value.shape for name, value in lstm.state_dict().items()}
    documented = docstring_shapes(lstmx.LSTM.__doc__)
    kinds = {re.sub(r"(\{s\}|_l\{k\})$", "", name) for name in documented}
    assert kinds == {"weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr", "weight_ci",
                     "weight_cf", "weight_co"} | LAYER_NORM_NAMES
    checked = 0
    for name, shp in documented.items():
        # "{s}" statements are about layer 0 (the docstring says "for k = 0" of weight_ih);
        # "_l{k}" ones about every layer.
        layers = [0] if name.endswith("{s}") else range(cfg.num_layers)
        base = re.sub(r"(\{s\}|_l\{k\})$", "", name)
        for k, d in itertools.product(layers, range(cfg.num_directions)):
            key = f"{base}{cfg.suffix(k, d)}"
            if key in real:
                assert real[key] == shape(shp, sizes_of(cfg)), (name, key)
                checked += 1
    assert checked >= 2 * cfg.num_directions  # weight_ih and weight_hh at least


@pytest.mark.parametrize("options", CELL_CONFIGS, ids=str)
def test_cell_docstring_parameter_shapes(options):
    cell = lstmx.LSTMCell(I, H, seed=0, **options)
    real = {name: value.shape for name, value in cell.state_dict().items()}
    documented = docstring_shapes(lstmx.LSTMCell.__doc__)
    assert set(documented) == {"weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_ci",
                               "weight_cf", "weight_co"} | LAYER_NORM_NAMES
    for name in real:
        assert real[name] == shape(documented[name], sizes_of(cell.config)), name


@pytest.mark.parametrize("bias", [True, False])
def test_linear_and_embedding_docstring_shapes(bias):
    lin = lstmx.Linear(I, H, bias=bias, seed=0)
    documented = docstring_shapes(lstmx.Linear.__doc__)
    assert {"weight", "bias"} <= set(documented)  # with x (..., I) and y (..., O)
    for name, value in lin.state_dict().items():
        assert value.shape == shape(documented[name], dict(I=I, O=H)), name
    emb = lstmx.Embedding(7, 4, seed=0)
    documented = docstring_shapes(lstmx.Embedding.__doc__)
    assert emb.state_dict()["weight"].shape == shape(documented["weight"], dict(V=7, E=4))


# --- the code on the pages runs ----------------------------------------------------------------

def code_blocks(text):
    """(python code, expected output or None) for each ```python block of a Markdown text;
    the expected output is a ```text block right after it."""
    blocks = re.findall(r"^```(\w*)\n(.*?)^```\s*$", text, flags=re.M | re.S)
    out = []
    for i, (lang, body) in enumerate(blocks):
        if lang == "python":
            follows = blocks[i + 1] if i + 1 < len(blocks) else None
            expected = follows[1] if follows and follows[0] == "text" else None
            out.append((body, expected))
    return out


def run_page(name, tmp_path, monkeypatch):
    """Run a page's python blocks in order in one namespace; return the namespace."""
    from threadpoolctl import threadpool_limits
    blocks = code_blocks(read(name))
    assert blocks, f"{name} has no python blocks"
    if any("import torch" in code for code, _ in blocks):
        require("torch")
    monkeypatch.chdir(tmp_path)  # pages may write files (lstmx.save)
    namespace = {"__name__": f"docs_{name}"}
    # One BLAS thread: on a shared machine, more only spin (the results are the same).
    with threadpool_limits(limits=1, user_api="blas"):
        for i, (code, expected) in enumerate(blocks):
            stdout = io.StringIO()
            with contextlib.redirect_stdout(stdout):
                exec(compile(code, f"<{name} block {i}>", "exec"), namespace)  # noqa: S102
            if expected is not None:
                assert stdout.getvalue().strip() == expected.strip(), \
                    f"{name} block {i} printed something else"
    return namespace


def test_tutorial_runs_and_prints_what_it_shows(tmp_path, monkeypatch):
    ns = run_page("tutorial.md", tmp_path, monkeypatch)
    # The training section says the error falls from about 1/3 to a few thousandths.
    assert ns["losses"][0] > 0.2
    assert ns["losses"][-1] < 0.01
    assert os.path.exists(tmp_path / "echo.npz")


def test_front_page_code_runs(tmp_path, monkeypatch):
    ns = run_page("index.md", tmp_path, monkeypatch)
    assert ns["y"].shape == (100, 8, 128)  # as its comment says
    assert ns["dx"].shape == ns["x"].shape


def test_install_page_code_runs(tmp_path, monkeypatch):
    ns = run_page("install.md", tmp_path, monkeypatch)
    assert ns["y"].shape == (100, 8, 64)


# --- the examples gallery -----------------------------------------------------------------------

@pytest.fixture
def gallery_module():
    sys.path.insert(0, os.path.join(DOCS, "_ext"))
    try:
        import lstmx_docs
        yield lstmx_docs
    finally:
        sys.path.remove(os.path.join(DOCS, "_ext"))


def test_gallery_has_a_page_per_example(gallery_module, tmp_path):
    examples = gallery_module.example_files()  # none in a checkout without examples/
    names = gallery_module.write_gallery(output_dir=str(tmp_path / "none"),
                                         gallery_dir=str(tmp_path / "gallery"))
    assert sorted(names) == sorted(os.path.basename(p)[:-3] for p in examples)
    for path in examples:
        info = gallery_module.read_example(path)
        assert info["docstring"], f"{path} has no docstring to show"
        page = (tmp_path / "gallery" / (info["name"] + ".rst")).read_text()
        assert info["docstring"].splitlines()[0] in page
        assert ".. figure::" not in page  # no plots in an empty output directory


def test_gallery_shows_a_plot_only_when_present(gallery_module, tmp_path):
    ex, out, gallery = tmp_path / "examples", tmp_path / "output", tmp_path / "gallery"
    ex.mkdir()
    (ex / "_common.py").write_text('"""Not an example."""\n')
    (ex / "demo.py").write_text('"""Demo task: learns.\n\nMeasured: 1 s."""\nimport os\n\n'
                                'T = 3\npath = os.path.join("out", f"demo_T{T}.png")\n')
    info = gallery_module.read_example(str(ex / "demo.py"))
    assert info["title"] == "Demo task" and info["plots"] == ["demo_T*.png"]
    assert info["body_start"] == 4
    assert gallery_module.write_gallery(str(ex), str(out), str(gallery)) == ["demo"]
    assert ".. figure::" not in (gallery / "demo.rst").read_text()
    out.mkdir()
    (out / "demo_T3.png").write_bytes(b"png")
    (out / "other.png").write_bytes(b"png")
    gallery_module.write_gallery(str(ex), str(out), str(gallery))
    page = (gallery / "demo.rst").read_text()
    assert ".. figure:: ../../examples/output/demo_T3.png" in page
    assert "other.png" not in page
    # A removed example's generated page goes; a hand-written page stays.
    (gallery / "mine.rst").write_text("Mine\n====\n")
    (ex / "demo.py").unlink()
    assert gallery_module.write_gallery(str(ex), str(out), str(gallery)) == []
    assert sorted(os.listdir(gallery)) == ["mine.rst"]
