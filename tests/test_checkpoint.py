"""Checkpoints of whole training runs: a resumed run is bit for bit the uninterrupted one."""
import io
import os
import signal
import stat
import subprocess
import sys
import textwrap
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import lstmx
from _helpers import require
from lstmx import checkpoint
from lstmx.optim import SGD, Adam, CosineAnnealingLR, StepLR

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V, E, H, T, B = 11, 5, 7, 6, 4


def build(seed):
    """A token model (Embedding -> LSTM -> Linear), its optimiser, schedule and generator."""
    emb = lstmx.Embedding(V, E, seed=seed)
    lstm = lstmx.LSTM(E, H, num_layers=2, seed=seed + 1)
    head = lstmx.Linear(H, V, seed=seed + 2)
    modules = {"emb": emb, "lstm": lstm, "head": head}
    opt = Adam([m.parameters() for m in modules.values()], lr=0.01, weight_decay=0.01)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    return modules, opt, sched, np.random.default_rng(seed + 3)


def train_step(modules, opt, sched, rng):
    emb, lstm, head = modules["emb"], modules["lstm"], modules["head"]
    tokens = rng.integers(0, V, size=(T + 1, B))  # the data depends on the generator
    e, e_cache = emb.forward_train(tokens[:-1])
    y, _, l_cache = lstm.forward_train(e)
    logits, h_cache = head.forward_train(y)
    loss, dlogits = lstmx.losses.cross_entropy(logits, tokens[1:])
    dy, g_head = head.backward(h_cache, dlogits)
    de, _, g_lstm = lstm.backward(l_cache, dy)
    g_emb = emb.backward(e_cache, de)
    opt.step([g_emb, g_lstm, g_head])
    sched.step()
    return loss


def snapshot(modules, opt, rng):
    state = {f"{k}.{p}": v.copy() for k, m in modules.items() for p, v in m.parameters().items()}
    for g, group in enumerate(opt.state):
        for key, slot in group.items():
            for buf, value in slot.items():
                state[f"opt.{g}.{key}.{buf}"] = value.copy()
    state["next draw"] = rng.random(3)
    return state, (opt.lr, opt.steps)


def assert_same(a, b):
    assert a[1] == b[1]
    assert a[0].keys() == b[0].keys()
    for key in a[0]:
        assert_array_equal(a[0][key], b[0][key], err_msg=key)


def test_resumed_run_is_bit_identical_to_the_uninterrupted_one(tmp_path):
    modules, opt, sched, rng = build(0)
    for _ in range(6):
        train_step(modules, opt, sched, rng)
    uninterrupted = snapshot(modules, opt, rng)

    modules, opt, sched, rng = build(0)
    for step in range(3):
        train_step(modules, opt, sched, rng)
    checkpoint.save(tmp_path / "run.npz", modules=modules, optimizer=opt, scheduler=sched,
                    rng=rng, step=3, extra={"losses": [1.5, 2.0], "note": ("a", None)})
    # A new process would build everything afresh, from other seeds even.
    modules, opt, sched, rng = build(100)
    info = checkpoint.load(tmp_path / "run.npz", modules=modules, optimizer=opt,
                           scheduler=sched, rng=rng)
    assert info["step"] == 3 and info["rng"] is rng and info["modules"] == modules
    assert info["extra"] == {"losses": [1.5, 2.0], "note": ("a", None)}
    assert opt.steps == 3 and sched.last_epoch == 3 and opt.lr == 0.01 * 0.5
    for _ in range(3):
        train_step(modules, opt, sched, rng)
    assert_same(snapshot(modules, opt, rng), uninterrupted)


def test_load_builds_modules_and_generator_that_were_not_given(tmp_path):
    modules, opt, sched, rng = build(0)
    train_step(modules, opt, sched, rng)
    checkpoint.save(tmp_path / "run.npz", modules=modules, rng=rng, step=1)
    info = checkpoint.load(tmp_path / "run.npz")
    for key, module in modules.items():
        assert type(info["modules"][key]) is type(module)
        for name, value in module.parameters().items():
            assert_array_equal(info["modules"][key].parameters()[name], value)
    assert_array_equal(info["rng"].random(4), rng.random(4))


def test_cell_sgd_cosine_and_legacy_random_state(tmp_path):
    def make(seed):
        cell = lstmx.LSTMCell(3, 4, peephole=True, dtype=np.float64, seed=seed)
        opt = SGD(cell.parameters(), lr=0.1, momentum=0.9, nesterov=True)
        return cell, opt, CosineAnnealingLR(opt, T_max=5), np.random.RandomState(seed)

    def step(cell, opt, sched, rs):
        x = rs.standard_normal((2, 3))
        (h, c), cache = cell.forward_train(x)
        _, _, grads = cell.backward(cache, (h - 1, None))
        opt.step(grads)
        sched.step()

    cell, opt, sched, rs = make(0)
    for _ in range(4):
        step(cell, opt, sched, rs)
    want = {k: v.copy() for k, v in cell.parameters().items()}
    cell, opt, sched, rs = make(0)
    for _ in range(2):
        step(cell, opt, sched, rs)
    checkpoint.save(tmp_path / "c.npz", modules={"cell": cell}, optimizer=opt,
                    scheduler=sched, rng=rs)
    cell, opt, sched, rs = make(7)
    checkpoint.load(tmp_path / "c.npz", modules={"cell": cell}, optimizer=opt,
                    scheduler=sched, rng=rs)
    for _ in range(2):
        step(cell, opt, sched, rs)
    for k, v in want.items():
        assert_array_equal(cell.parameters()[k], v, err_msg=k)


def test_a_mismatch_changes_nothing(tmp_path):
    modules, opt, sched, rng = build(0)
    train_step(modules, opt, sched, rng)
    checkpoint.save(tmp_path / "run.npz", modules=modules, optimizer=opt, rng=rng)
    other, other_opt, _, other_rng = build(5)
    other["head"] = lstmx.Linear(H, V + 1, seed=0)  # another vocabulary
    other_opt = Adam([m.parameters() for m in other.values()])
    before = snapshot(other, other_opt, np.random.default_rng(0))
    state = other_rng.bit_generator.state
    with pytest.raises(ValueError, match="module 'head' was saved as Linear"):
        checkpoint.load(tmp_path / "run.npz", modules=other, optimizer=other_opt,
                        rng=other_rng)
    assert_same(snapshot(other, other_opt, np.random.default_rng(0)), before)
    assert other_rng.bit_generator.state == state
    with pytest.raises(ValueError, match="holds no scheduler"):
        checkpoint.load(tmp_path / "run.npz", scheduler=sched)
    with pytest.raises(ValueError, match="none named"):
        checkpoint.load(tmp_path / "run.npz", modules={"decoder": other["head"]})


def test_other_files_are_refused(tmp_path):
    lstmx.save(lstmx.LSTM(2, 3), tmp_path / "model.npz")
    with pytest.raises(ValueError, match="not an lstmx checkpoint"):
        checkpoint.load(tmp_path / "model.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(ValueError, match="not a readable lstmx checkpoint"):
        checkpoint.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "objects.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="not a readable lstmx checkpoint"):  # never unpickled
        checkpoint.load(tmp_path / "objects.npz")


def test_odd_zip_members_and_file_mode(tmp_path):
    with zipfile.ZipFile(tmp_path / "bz.npz", "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("a.npy", b"x" * 100)
    with pytest.raises(ValueError, match="compressed in a way np.savez never is"):
        checkpoint.load(tmp_path / "bz.npz")
    old = os.umask(0o022)
    try:
        checkpoint.save(tmp_path / "m.npz", step=1)
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "m.npz").st_mode & 0o777 == 0o644
    buf = io.BytesIO(b"preamble")
    buf.seek(0, io.SEEK_END)
    checkpoint.save(buf, step=5)
    buf.seek(len(b"preamble"))
    assert checkpoint.load(buf)["step"] == 5


def test_save_refuses_what_it_cannot_restore(tmp_path):
    with pytest.raises(TypeError, match="cannot checkpoint a dict"):
        checkpoint.save(tmp_path / "x.npz", modules={"m": {"weight": np.zeros(2)}})
    with pytest.raises(TypeError, match="cannot checkpoint a set"):
        checkpoint.save(tmp_path / "x.npz", extra={"s": {1, 2}})
    with pytest.raises(TypeError, match="rng must be"):
        checkpoint.save(tmp_path / "x.npz", rng=np.random.default_rng(0).bit_generator)
    assert not os.listdir(tmp_path)  # nothing half-written


def test_estimator_checkpoint_resumes_partial_fit(tmp_path):
    require("sklearn")
    from lstmx.sklearn import LSTMClassifier, LSTMRegressor
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5))
    y = X[:, -2:].sum(axis=1)
    a = LSTMRegressor(hidden_size=4, batch_size=8, random_state=0)
    for _ in range(4):
        a.partial_fit(X, y)
    b = LSTMRegressor(hidden_size=4, batch_size=8, random_state=0)
    for _ in range(2):
        b.partial_fit(X, y)
    checkpoint.save(tmp_path / "est.npz", modules={"model": b})
    c = checkpoint.load(tmp_path / "est.npz")["modules"]["model"]
    assert c.get_params() == b.get_params()
    for _ in range(2):
        c.partial_fit(X, y)
    assert_array_equal(c.predict(X), a.predict(X))
    assert c.history_ == a.history_ and c.n_iter_ == 4

    labels = np.where(y > 0, "up", "down")
    clf = LSTMClassifier(hidden_size=4, max_iter=3, random_state=0).fit(X, labels)
    checkpoint.save(tmp_path / "clf.npz", modules={"clf": clf})
    into = LSTMClassifier(hidden_size=9)
    checkpoint.load(tmp_path / "clf.npz", modules={"clf": into})
    assert into.hidden_size == 4
    assert_array_equal(into.classes_, clf.classes_)
    assert_array_equal(into.predict_proba(X), clf.predict_proba(X))
    unfitted = LSTMClassifier(max_iter=7)
    checkpoint.save(tmp_path / "unfitted.npz", modules={"clf": unfitted})
    restored = checkpoint.load(tmp_path / "unfitted.npz")["modules"]["clf"]
    assert restored.max_iter == 7 and not hasattr(restored, "classes_")



def members_of_checkpoint(**kwargs) -> list:
    """The (name, bytes) members of a small checkpoint, in order."""
    buf = io.BytesIO()
    checkpoint.save(buf, **kwargs)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        return [(n, z.read(n)) for n in z.namelist()]


def zipped(members, compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def forge_sizes(blob: bytes, member: str, stored=None, inflated=None) -> bytes:
    """``blob`` with the zip directory's stored and inflated sizes of ``member`` changed."""
    blob = bytearray(blob)
    entry = blob.rindex(b"PK\x01\x02", 0, blob.rindex(member.encode()))
    for offset, size in ((20, stored), (24, inflated)):
        if size is not None:
            blob[entry + offset:entry + offset + 4] = size.to_bytes(4, "little")
    return bytes(blob)


HUGE = (1 << 28,)  # float64: 2 GiB, from a member of a few hundred bytes


@pytest.mark.parametrize("forged", ["npy header", "npy header and zip size",
                                    "npy header and zip sizes"])
def test_forged_member_claiming_a_huge_array_is_refused_before_allocating(forged):
    members = members_of_checkpoint(step=1, extra={"w": np.arange(8.0)})
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        head, {"descr": "<f8", "fortran_order": False, "shape": HUGE})
    claimed = len(head.getvalue()) + 8 * HUGE[0]
    members = [(n, head.getvalue() + d[-64:] if n == "extra/w.npy" else d)
               for n, d in members]
    blob = zipped(members)
    message = r"declares 2147483648 bytes of data; the member holds 64"
    if forged != "npy header":  # the zip directory agrees with the .npy header
        blob = forge_sizes(blob, "extra/w.npy", inflated=claimed)
        message = rf"claims {claimed} bytes, more than its \d+ stored bytes can hold"
    if forged == "npy header and zip sizes":  # ... and claims the bytes are stored
        blob = forge_sizes(blob, "extra/w.npy", stored=claimed)
        message = rf"claims {claimed} stored bytes at offset \d+; the file has \d+ there"
    stream = io.BytesIO(blob)
    stream.name = "forged.npz"
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"'forged.npz'.*member 'extra/w.npy'.*" +
                           message):
            checkpoint.load(stream)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_duplicate_members_are_refused():
    members = members_of_checkpoint(step=1, extra={"w": np.arange(3.0)})
    members.append(("extra/w.npy", dict(members_of_checkpoint(
        extra={"w": np.arange(3.0) + 1}))["extra/w.npy"]))
    with pytest.raises(ValueError, match=r"ambiguous: .*more than one member named "
                                         r"\['extra/w.npy'\]"):
        checkpoint.load(io.BytesIO(zipped(members)))


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_members_compressed_other_than_deflate_are_refused(method):
    members = members_of_checkpoint(step=1, extra={"w": np.arange(3.0)})
    assert checkpoint.load(io.BytesIO(zipped(members, zipfile.ZIP_DEFLATED)))["step"] == 1
    with pytest.raises(ValueError, match=f"uses compression method {method}; an lstmx "
                                         "checkpoint's members are stored or deflated"):
        checkpoint.load(io.BytesIO(zipped(members, method)))


def test_arrays_of_either_byte_order_load_in_native_order():
    members = members_of_checkpoint(extra={"w": np.arange(6.0).reshape(2, 3),
                                           "n": np.arange(4, dtype=np.int32)})
    swapped = []
    for name, data in members:
        a = np.load(io.BytesIO(data))
        if name.startswith("extra/"):
            a = np.asfortranarray(a.astype(a.dtype.newbyteorder(">")))
        buf = io.BytesIO()
        np.lib.format.write_array(buf, a)
        swapped.append((name, buf.getvalue()))
    extra = checkpoint.load(io.BytesIO(zipped(swapped)))["extra"]
    for key, want in (("w", np.arange(6.0).reshape(2, 3)), ("n", np.arange(4))):
        assert extra[key].dtype.isnative and extra[key].flags.c_contiguous
        assert_array_equal(extra[key], want)


def test_save_keeps_an_existing_files_mode(tmp_path):
    path = tmp_path / "run.npz"
    path.write_bytes(b"")
    path.chmod(0o640)
    checkpoint.save(path, step=2)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert checkpoint.load(path)["step"] == 2
    assert os.listdir(tmp_path) == ["run.npz"]


def test_what_is_not_a_binary_file_is_a_type_error(tmp_path):
    for bad in (42, None):
        with pytest.raises(TypeError, match="file must be a path or a binary file object"):
            checkpoint.load(bad)
        with pytest.raises(TypeError, match="file must be a path or a binary file object"):
            checkpoint.save(bad, step=1)
    with pytest.raises(TypeError, match="opened in text mode"):
        checkpoint.save(io.StringIO(), step=1)


SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    sys.path.insert(0, sys.argv[4])
    import lstmx
    from lstmx import checkpoint
    from test_checkpoint import build, train_step

    path, n_steps, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    modules, opt, sched, rng = build(0)
    start = 0
    if len(sys.argv) > 5:
        start = checkpoint.load(path, modules=modules, optimizer=opt, scheduler=sched,
                                rng=rng)["step"]
    for step in range(start, n_steps):
        train_step(modules, opt, sched, rng)
        checkpoint.save(path, modules=modules, optimizer=opt, scheduler=sched, rng=rng,
                        step=step + 1)
        print("saved", step + 1, flush=True)
        time.sleep(pause)
    np.savez(path + ".final.npz", **{f"{k}.{p}": v for k, m in modules.items()
                                     for p, v in m.parameters().items()})
""")


def test_killed_process_resumes_to_the_same_weights(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=ROOT)
    run = [sys.executable, str(script)]
    n = 8
    subprocess.run(run + [str(tmp_path / "whole.npz"), str(n), "0", tests], env=env,
                   check=True, timeout=120)
    # SIGKILL mid-run: no handler, no cleanup; the last complete checkpoint must serve.
    proc = subprocess.Popen(run + [str(tmp_path / "cut.npz"), str(n), "0.2", tests], env=env,
                            stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.strip() == "saved 3":
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(str(tmp_path / "cut.npz") + ".final.npz")
    subprocess.run(run + [str(tmp_path / "cut.npz"), str(n), "0", tests, "resume"], env=env,
                   check=True, timeout=120)
    whole = np.load(str(tmp_path / "whole.npz") + ".final.npz")
    resumed = np.load(str(tmp_path / "cut.npz") + ".final.npz")
    assert sorted(whole.files) == sorted(resumed.files)
    for key in whole.files:
        assert_array_equal(resumed[key], whole[key], err_msg=key)
