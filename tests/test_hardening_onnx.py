"""from_onnx against malformed and hostile models: clear errors, no file read that the caller
did not name, and graphs imported exactly or not at all (onnxruntime as the oracle)."""
import os

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import lstmx
from lstmx.interop import from_onnx, to_onnx

from _helpers import require

onnx = require("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

T, B, I, H = 5, 3, 4, 6


def run_ort(model, feeds):
    if any(a.name == "layout" and a.i == 1 for n in model.graph.node for a in n.attribute):
        # onnxruntime runs only layout 0; onnx's reference evaluator runs both
        from onnx.reference import ReferenceEvaluator
        return ReferenceEvaluator(model).run(None, feeds)
    ort = require("onnxruntime")
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def lstm_node(graph, index=0):
    return [n for n in graph.node if n.op_type == "LSTM"][index]


def set_attr(node, name, value):
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(helper.make_attribute(name, value))


def test_garbage_is_a_value_error_naming_the_input(tmp_path):
    garbage = b"\xff\xfe not a protobuf \x00\x01" * 8
    with pytest.raises(ValueError, match=rf"the ONNX model \({len(garbage)} bytes\) is not "
                                         r"an ONNX model .*DecodeError"):
        from_onnx(garbage)
    path = tmp_path / "bad.onnx"
    path.write_bytes(garbage)
    with pytest.raises(ValueError, match=f"{str(path)!r} is not an ONNX model"):
        from_onnx(path)


@pytest.mark.parametrize("as_bytes", [True, False])
def test_external_data_is_read_only_from_a_named_base_dir(tmp_path, monkeypatch, as_bytes):
    model = lstmx.LSTM(I, H, seed=0)
    proto = to_onnx(model)
    w = next(t for t in proto.graph.initializer if t.name == "W_l0")
    data = numpy_helper.to_array(w).tobytes()
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\0" * 16 + data)
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in {"location": "weights.bin", "offset": "16",
                       "length": str(len(data))}.items():
        w.external_data.add(key=key, value=value)
    monkeypatch.chdir(tmp_path)  # where the bytes' relative location would be found
    path = tmp_path / "model.onnx"
    path.write_bytes(proto.SerializeToString())
    source = proto.SerializeToString() if as_bytes else path
    with pytest.raises(ValueError, match="external file 'weights.bin'; from_onnx reads no "
                                         "file but the model it is given: pass base_dir"):
        from_onnx(source)
    loaded = from_onnx(source, base_dir=tmp_path)
    for name, value in model.state_dict().items():
        assert_array_equal(loaded.parameters()[name], value)
    # Only regular files inside base_dir, and only what fits them.
    sub = tmp_path / "sub"
    sub.mkdir()
    w.external_data[0].value = "../weights.bin"
    with pytest.raises(ValueError, match="is not a file inside base_dir"):
        from_onnx(proto.SerializeToString(), base_dir=sub)
    w.external_data[0].value = "weights.bin"
    w.external_data[1].value = str(10 ** 9)
    with pytest.raises(ValueError, match="does not fit 'weights.bin'"):
        from_onnx(proto.SerializeToString(), base_dir=tmp_path)


@pytest.mark.parametrize("metadata, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"batch_first": "no"}', "batch_first must be true or false; got 'no'"),
    ('{"cell": 1}', "cell must be true or false"),
    ('{"other": true}', r"must be a JSON object with the fields .*; got \['other'\]"),
])
def test_bad_lstmx_metadata(metadata, message):
    proto = to_onnx(lstmx.LSTM(I, H, seed=0))
    helper.set_model_props(proto, {"lstmx.config": metadata})
    with pytest.raises(ValueError, match="metadata 'lstmx.config'.*" + message):
        from_onnx(proto)


@pytest.mark.parametrize("name, value, message", [
    ("activations", ["Sigmoid", "Tanh"], r"3 functions per direction, 3 in all; got 2"),
    ("activations", ["Sigmoid", "Tanh", "Tanh", "Relu"], "3 in all; got 4"),
    ("activation_alpha", [1.0], r"one value per Affine activation \(0\); got 1 and 0"),
    ("layout", 2, "layout must be 0 or 1; got 2"),
    ("direction", "sideways", "direction must be one of"),
    ("input_forget", 2, "input_forget=2"),
    ("hidden_size", H + 1, f"hidden_size={H + 1} but W has"),
    ("made_up", 1, r"unknown attribute 'made_up'"),
])
def test_node_attributes_are_checked_in_full(name, value, message):
    proto = to_onnx(lstmx.LSTM(I, H, seed=0))
    set_attr(lstm_node(proto.graph), name, value)
    with pytest.raises(ValueError, match=message):
        from_onnx(proto)


@pytest.mark.parametrize("name, value", [
    ("activations", [1, 2, 3]), ("direction", 1), ("layout", "batch"), ("hidden_size", 6.0),
    ("activation_alpha", "one"), ("clip", [1.0]),
])
def test_attributes_of_the_wrong_type(name, value):
    proto = to_onnx(lstmx.LSTM(I, H, seed=0))
    set_attr(lstm_node(proto.graph), name, value)
    with pytest.raises(TypeError, match=f"attribute '{name}' must be of type"):
        from_onnx(proto)


def test_constant_state_or_lengths_are_refused():
    proto = to_onnx(lstmx.LSTM(I, H, seed=0))
    node = lstm_node(proto.graph)
    proto.graph.initializer.append(numpy_helper.from_array(np.ones((1, B, H), np.float32),
                                                           "h0"))
    node.input.extend(["", "h0"])
    with pytest.raises(ValueError, match="input initial_h .* is a constant of the graph"):
        from_onnx(proto)


def test_wrong_rank_and_type_tensors():
    proto = to_onnx(lstmx.LSTM(I, H, seed=0))
    w = next(t for t in proto.graph.initializer if t.name == "W_l0")
    w.CopyFrom(numpy_helper.from_array(np.zeros((4 * H, I), np.float32), "W_l0"))
    with pytest.raises(ValueError, match=r"W must be \(D=1, 4H, I\)"):
        from_onnx(proto)
    w.CopyFrom(numpy_helper.from_array(np.zeros((1, 4 * H, I), np.int32), "W_l0"))
    with pytest.raises(TypeError, match="W must be a float tensor; got int32"):
        from_onnx(proto)
    bad = numpy_helper.from_array(np.zeros((1, 4 * H, I), np.float32), "W_l0")
    bad.dims[1] = 10 ** 6  # a shape its data does not fill
    w.CopyFrom(bad)
    with pytest.raises(ValueError, match="does not hold the data its shape"):
        from_onnx(proto)


def two_layers(bidirectional):
    model = lstmx.LSTM(I, H, num_layers=2, bidirectional=bidirectional, seed=3)
    return model, to_onnx(model)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_transpose_that_swaps_time_and_batch_between_layers_is_refused(bidirectional):
    model, proto = two_layers(bidirectional)
    tr = next(n for n in proto.graph.node if n.op_type == "Transpose")
    set_attr(tr, "perm", [2, 0, 1, 3])  # (T, D, B, H) -> (B, T, D, H): time and batch swap
    # onnxruntime runs it (with T = B, so that the states concatenate): a different model,
    # whose second layer steps through the batch
    x = np.random.default_rng(0).standard_normal((B, B, I)).astype(np.float32)
    Y = run_ort(proto, {"X": x})[0]
    y_stacked = model(x)[0]
    assert not np.allclose(Y.transpose(0, 2, 1, 3).reshape(y_stacked.shape), y_stacked)
    with pytest.raises(ValueError, match=r"laid out as \('B', 'T', 'DH'\); an lstmx layer "
                                         r"reads \('T', 'B', 'DH'\)"):
        from_onnx(proto)


def test_other_operations_between_layers_are_refused():
    model, proto = two_layers(False)
    reshape = next(n for n in proto.graph.node if n.op_type == "Reshape")
    reshape.op_type = "Relu"
    del reshape.input[1:]
    with pytest.raises(ValueError, match="from a Relu node"):
        from_onnx(proto)


def squeeze_between_layers(layout):
    """Two forward layers as PyTorch's exporter writes them: Y (T, 1, B, H) squeezed on the
    direction axis (layout 0), or Y (B, T, 1, H) on axis 2 (layout 1)."""
    rng = np.random.default_rng(5)
    inits, nodes = [], []
    for k, n_in in enumerate((I, H)):
        for name, shape in (("W", (1, 4 * H, n_in)), ("R", (1, 4 * H, H)), ("B", (1, 8 * H))):
            inits.append(numpy_helper.from_array(
                rng.uniform(-0.5, 0.5, shape).astype(np.float32), f"{name}{k}"))
    inits.append(numpy_helper.from_array(np.array([1 if layout == 0 else 2], np.int64),
                                         "axes"))
    nodes.append(helper.make_node("LSTM", ["X", "W0", "R0", "B0"], ["Y0", "", ""],
                                  hidden_size=H, layout=layout))
    nodes.append(helper.make_node("Squeeze", ["Y0", "axes"], ["X1"]))
    nodes.append(helper.make_node("LSTM", ["X1", "W1", "R1", "B1"], ["Y", "Y_h", "Y_c"],
                                  hidden_size=H, layout=layout))
    f = TensorProto.FLOAT
    x_shape = [T, B, I] if layout == 0 else [B, T, I]
    graph = helper.make_graph(nodes, "squeezed", [helper.make_tensor_value_info("X", f,
                                                                                 x_shape)],
                              [helper.make_tensor_value_info(n, f, None)
                               for n in ("Y", "Y_h", "Y_c")], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    proto.ir_version = 8
    return proto


@pytest.mark.parametrize("layout", [0, 1])
def test_squeezed_unidirectional_stack_imports_exactly(layout):
    proto = squeeze_between_layers(layout)
    model = from_onnx(proto)
    assert model.config.num_layers == 2 and model.config.batch_first == (layout == 1)
    x = np.random.default_rng(6).standard_normal(
        (T, B, I) if layout == 0 else (B, T, I)).astype(np.float32)
    Y, Y_h, Y_c = run_ort(proto, {"X": x})
    y, (h, c) = model(x)
    assert_allclose(y, Y[:, 0] if layout == 0 else Y[:, :, 0], rtol=1e-5, atol=1e-6)
    # Y_h is (L*D, B, H) only at layout 0; the last layer's state either way
    assert_allclose(h[-1], Y_h[0] if layout == 0 else Y_h[:, 0], rtol=1e-5, atol=1e-6)


def forward_reverse_pair(concat_axis=1, swap=False):
    """One bidirectional layer written as two nodes, 'forward' and 'reverse', on X."""
    rng = np.random.default_rng(7)
    inits = []
    for d in ("f", "r"):
        for name, shape in (("W", (1, 4 * H, I)), ("R", (1, 4 * H, H)), ("B", (1, 8 * H)),
                            ("P", (1, 3 * H))):
            inits.append(numpy_helper.from_array(
                rng.uniform(-0.5, 0.5, shape).astype(np.float32), name + d))
    nodes = [helper.make_node("LSTM", ["X", "Wf", "Rf", "Bf", "", "", "", "Pf"],
                              ["Yf", "Yf_h", "Yf_c"], hidden_size=H, direction="forward"),
             helper.make_node("LSTM", ["X", "Wr", "Rr", "Br", "", "", "", "Pr"],
                              ["Yr", "Yr_h", "Yr_c"], hidden_size=H, direction="reverse")]
    if swap:
        nodes.reverse()
    nodes.append(helper.make_node("Concat", ["Yf", "Yr"], ["Y"], axis=concat_axis))
    f = TensorProto.FLOAT
    graph = helper.make_graph(nodes, "pair", [helper.make_tensor_value_info("X", f,
                                                                             [T, B, I])],
                              [helper.make_tensor_value_info(n, f, None)
                               for n in ("Y", "Yf_h", "Yr_h")], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    proto.ir_version = 8
    return proto


@pytest.mark.parametrize("swap", [False, True])
def test_forward_and_reverse_nodes_import_as_one_bidirectional_layer(swap):
    proto = forward_reverse_pair(swap=swap)
    model = from_onnx(proto)
    assert model.config.bidirectional and model.config.peephole
    x = np.random.default_rng(8).standard_normal((T, B, I)).astype(np.float32)
    Y, Yf_h, Yr_h = run_ort(proto, {"X": x})
    y, (h, c) = model(x)
    assert_allclose(y, Y.transpose(0, 2, 1, 3).reshape(T, B, 2 * H), rtol=1e-5, atol=1e-6)
    assert_allclose(h[0], Yf_h[0], rtol=1e-5, atol=1e-6)
    assert_allclose(h[1], Yr_h[0], rtol=1e-5, atol=1e-6)


def test_reverse_node_not_paired_exactly_is_refused():
    with pytest.raises(ValueError, match="must pair with a 'forward' node"):
        from_onnx(forward_reverse_pair(concat_axis=0))
    proto = forward_reverse_pair()
    proto.graph.node[1].input[0] = "other"
    with pytest.raises(ValueError, match="must pair with a 'forward' node"):
        from_onnx(proto)


def test_external_data_check_does_not_follow_symlinks_out(tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"\0" * 4096)
    base = tmp_path / "base"
    base.mkdir()
    os.symlink(outside, base / "link.bin")
    proto = to_onnx(lstmx.LSTM(I, H, seed=0))
    w = next(t for t in proto.graph.initializer if t.name == "W_l0")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value="link.bin")
    with pytest.raises(ValueError, match="not a file inside base_dir"):
        from_onnx(proto, base_dir=base)


def test_names_given_twice_are_refused():
    proto = to_onnx(lstmx.LSTM(I, H, seed=0))
    w = next(t for t in proto.graph.initializer if t.name == "W_l0")
    twin = onnx.TensorProto()
    twin.CopyFrom(w)
    proto.graph.initializer.append(twin)
    with pytest.raises(ValueError, match=r"ambiguous: the names \['W_l0'\]"):
        from_onnx(proto)


def test_negative_dimensions_are_refused():
    proto = to_onnx(lstmx.LSTM(I, H, seed=0))
    w = next(t for t in proto.graph.initializer if t.name == "W_l0")
    w.dims[0] = -1
    with pytest.raises(ValueError, match=r"input W \('W_l0'\) has negative dimensions"):
        from_onnx(proto)


from hypothesis import given, strategies as st  # noqa: E402

_EXPORTS = [to_onnx(lstmx.LSTM(I, H, num_layers=2, bidirectional=True, peephole=True,
                               seed=9)).SerializeToString(),
            to_onnx(lstmx.LSTMCell(I, H, seed=10)).SerializeToString()]


@given(which=st.sampled_from([0, 1]), edits=st.lists(
    st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1,
    max_size=8), cut=st.none() | st.floats(0, 1))
def test_fuzz_damaged_onnx_bytes(which, edits, cut):
    data = bytearray(_EXPORTS[which])
    for where, byte in edits:
        data[int(where * len(data))] = byte
    if cut is not None:
        data = data[:int(cut * len(data))]
    try:
        model = from_onnx(bytes(data))
    except (ValueError, TypeError) as err:
        assert str(err) and not str(err).startswith("kernel argument")
        return
    # a model that imports must work
    x = np.ones((2, 1, model.config.input_size), model.config.dtype)
    if isinstance(model, lstmx.LSTMCell):
        model(x[0])
    else:
        model(x)


@given(data=st.data())
def test_fuzz_structurally_damaged_graphs(data):
    """Inputs and outputs of nodes dropped or renamed, attributes removed: a clear error or
    a working model, never an IndexError or AttributeError."""
    proto = onnx.ModelProto()
    proto.ParseFromString(_EXPORTS[0])
    nodes = list(proto.graph.node)
    for _ in range(data.draw(st.integers(1, 4))):
        node = nodes[data.draw(st.integers(0, len(nodes) - 1))]
        field = data.draw(st.sampled_from(["input", "output", "attribute"]))
        items = getattr(node, field)
        if not len(items):
            continue
        i = data.draw(st.integers(0, len(items) - 1))
        if field == "attribute" or data.draw(st.booleans()):
            del items[i]
        else:
            items[i] = data.draw(st.sampled_from(["", "X", "Y", "W_l0", "nowhere"]))
    try:
        model = from_onnx(proto)
    except (ValueError, TypeError) as err:
        assert str(err)
        return
    model(np.ones((2, 1, model.config.input_size), model.config.dtype))
