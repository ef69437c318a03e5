"""QuantizedLSTM and QuantizedLSTMCell (int8, bfloat16): against the NumPy reference of the same
quantisation, against the float model within the bound of docs/quantization.md, and their API."""
import dataclasses
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from threadpoolctl import threadpool_limits

import lstmx
from _helpers import amx_granted
from lstmx import _dispatch
from lstmx import reference, reference_quantized as ref
from lstmx.quantized import QuantizedLSTM, QuantizedLSTMCell

MODES = ("int8", "bfloat16")
kernels = _dispatch.quantized()

# Kernel vs reference: the same quantisation, so the integer parts agree exactly and the float
# parts (the float kernels' exp and tanh against NumPy's, a fused multiply-add or not) to
# float32 rounding, a few ulp carried through a few steps. Those last-bit differences feed the
# next step's rounding of h: where an activation sits at a rounding tie, the two could round
# it to neighbouring levels. The sizes and seeds here meet none (a few hundred activation
# rows); the products themselves are compared bit for bit by the tests below.
CLOSE = dict(rtol=2e-5, atol=2e-6)


# The reference sums bfloat16 products in the kernels' order where that order is fixed
# (vdpbf16ps); BLAS's is its own, as NumPy's matmul's is, and so is AMX's tdpbf16ps.
BF16_SUMS = "vdpbf16ps" if kernels.BF16_PRODUCTS == "vdpbf16ps" else "matmul"


def run_reference(q, x, state=None, lengths=None):
    h0, c0 = (None, None) if state is None else state
    return ref.lstm_forward(q.state_dict(), q.config, q.mode, x, h0, c0, lengths,
                            bf16_sums=BF16_SUMS)


def problem(cfg, T, B, seed=0, lengths=False):
    rng = np.random.default_rng(seed)
    LD = cfg.num_layers * cfg.num_directions
    shape = (B, T, cfg.input_size) if cfg.batch_first else (T, B, cfg.input_size)
    x = rng.standard_normal(shape).astype(np.float32)
    state = (rng.standard_normal((LD, B, cfg.output_size)).astype(np.float32),
             rng.standard_normal((LD, B, cfg.hidden_size)).astype(np.float32))
    lens = rng.integers(1, T + 1, size=B) if lengths else None
    return x, state, lens


# ------------------------------------------------------------------------ the quantisation itself

STEP = kernels.DEPTH_MULTIPLE
LEVELS = int(ref.ACTIVATION_LEVELS)


def int_operands(rng, rows, N, K):
    """Activations and weights in [-127, 127], int8, as the kernels take them."""
    return (rng.integers(-LEVELS, LEVELS + 1, (rows, K)).astype(np.int8),
            rng.integers(-127, 128, (N, K)).astype(np.int8))


def test_integer_products_are_exact():
    rng = np.random.default_rng(0)
    for rows, N, K in [(1, 4, STEP), (3, 8, 2 * STEP), (5, 12, 3 * STEP), (130, 20, 512),
                       (257, 4, STEP)]:
        A, W = int_operands(rng, rows, N, K)
        assert_array_equal(kernels.int_matmul(A, W), ref.int_product(A, W))


@given(rows=st.integers(1, 40), cols=st.integers(1, 12), depth=st.integers(1, 5),
       seed=st.integers(0, 2 ** 32 - 1))
def test_integer_products_are_exact_for_any_shape(rows, cols, depth, seed):
    A, W = int_operands(np.random.default_rng(seed), rows, 4 * cols, STEP * depth)
    assert_array_equal(kernels.int_matmul(A, W), ref.int_product(A, W))


def test_packed_weights_lay_out_each_tile_or_vector_and_carry_the_row_sums():
    # Generic products: padded to whole tiles of 4 rows and vectors of 32 bytes; in a tile,
    # row j's bytes k .. k+31 (k a multiple of 32) follow rows 0 .. j-1's (_int8_dot.h).
    # vpdpbusd (512- or 256-bit) and AMX's tdpbusd: padded to vectors of 16 rows; in one,
    # row j's bytes k .. k+3 (k a multiple of 4) follow rows 0 .. j-1's (_dot_tiles.h); AMX
    # pads the depth to 64.
    rng = np.random.default_rng(3)
    q = rng.integers(-127, 128, (6, 40)).astype(np.int8)
    packed, sums = kernels.pack_weights(q)
    cols, Kp = kernels.COLUMN_MULTIPLE, kernels.padded_depth(40)
    assert packed.dtype == np.int8 and packed.shape == (cols * 2 if cols == 4 else cols, Kp)
    assert sums.dtype == np.int32
    assert_array_equal(sums, np.r_[q.sum(axis=1), np.zeros(len(packed) - 6, np.int32)])
    flat = packed.reshape(-1)
    n, k = np.meshgrid(np.arange(6), np.arange(40), indexing="ij")
    if kernels.INT8_PRODUCTS != "generic":
        at = (n // 16) * 16 * Kp + (k // 4) * 64 + (n % 16) * 4 + k % 4
    else:
        at = (n // 4) * 4 * Kp + (k // STEP) * 4 * STEP + (n % 4) * STEP + k % STEP
    assert_array_equal(flat[at], q)
    assert np.count_nonzero(flat) == np.count_nonzero(q)


def test_integer_products_where_vpmaddubsw_would_saturate():
    # Without VNNI the kernels multiply |q| by w * sign(q) two products at a time into int16
    # (vpmaddubsw saturates there): with q = +-127 against w = +-127 every pair is +-32258, the
    # most a pair can be. On the unsigned bytes q + 128 (up to 255) a pair would be +-64770
    # and saturate at 32767; vpdpbusd, which takes those, has no int16 step. Signs mixed
    # within a pair, between pairs and rows.
    K = 4 * STEP
    A = np.full((6, K), LEVELS, np.int8)
    A[1] = -LEVELS                                  # the smallest pair sums
    A[2, ::2] = -LEVELS
    A[3, ::4] = -LEVELS
    A[4] = 0
    A[5, K // 2:] = -LEVELS
    W = np.full((8, K), 127, np.int8)
    W[1] = -127
    W[2, 1::2] = -127
    W[3, ::3] = -127
    W[4, :K // 2] = -127
    W[5] = 0
    W[6, ::2] = 1
    W[7, 5] = -127
    out = kernels.int_matmul(A, W)
    assert_array_equal(out, ref.int_product(A, W))
    assert out[0, 0] == LEVELS * 127 * K and out[1, 0] == -LEVELS * 127 * K


@given(rows=st.integers(1, 9), K=st.integers(1, 70), seed=st.integers(0, 2 ** 32 - 1),
       magnitude=st.sampled_from([1e-42, 1e-30, 1.0, 1e30]))
def test_activation_quantisation_is_the_reference_for_any_shape(rows, K, seed, magnitude):
    v = (np.random.default_rng(seed).standard_normal((rows, K)) * magnitude).astype(np.float32)
    q, s = kernels.quantize_activations(v)
    q_ref, s_ref = ref.quantize_activations(v)
    assert_array_equal(q, q_ref)
    assert_array_equal(s, s_ref)


def test_integer_products_at_the_largest_depth_do_not_overflow():
    # vpdpbusd's sums of bytes (up to 255) times weights reach 255 * 127 * K before the zero
    # point's correction: still below 2**31 at the largest depth allowed.
    K = kernels.MAX_INT_DEPTH // STEP * STEP
    A = np.full((2, K), LEVELS, np.int8)
    A[1] = -LEVELS
    W = np.full((4, K), 127, np.int8)
    W[1] = -127
    out = kernels.int_matmul(A, W)
    assert_array_equal(out, ref.int_product(A, W))
    assert out[0, 0] == LEVELS * 127 * K and out[0, 1] == -LEVELS * 127 * K
    assert 255 * 127 * K < 2 ** 31


def test_activation_quantisation_matches_reference_bit_for_bit():
    rng = np.random.default_rng(1)
    v = rng.standard_normal((12, 37)).astype(np.float32)
    v[1] = 0                                      # zero row: scale 0
    v[2] *= np.float32(1e-44)                     # denormals: the scale underflows to 0
    v[3] *= np.float32(1e-39)                     # denormal scale: clipped to [-127, 127]
    v[4] *= np.float32(3e37)                      # near float32's maximum
    v[5, 3] = np.nan
    v[6, 0] = np.inf
    v[7, 9] = -np.inf
    v[8] = np.linspace(-1, 1, 37)                 # ties of v / s at .5
    v[9, :] = 1
    v[10, -1] = 50                                # the largest in the last values (AVX-512: a
    v[11, -2] = np.nan                            # vector of them overlaps the one before)
    q, s = kernels.quantize_activations(v)
    q_ref, s_ref = ref.quantize_activations(v)
    assert_array_equal(q, q_ref)
    assert_array_equal(s, s_ref)                  # NaN where NaN
    assert np.isnan(s[5:8]).all() and (q[5:8] == 0).all()
    assert np.isnan(s[11]) and (q[11] == 0).all()
    assert s[10] == np.float32(50) / np.float32(LEVELS) and q[10, -1] == LEVELS
    assert s[1] == 0 and s[2] == 0 and (q[1:3] == 0).all()
    assert np.abs(q.astype(int)).max() == LEVELS


def test_bfloat16_rounding_matches_reference_bit_for_bit():
    bits = np.array([0x3F808000, 0x3F818000, 0x3F80C000, 0x7F7FFFFF, 0x7F800000, 0xFF800000,
                     0x7F800001, 0x7FC00000, 0x00000001, 0x80000000, 0x3F7FFFFF, 0x477FE000],
                    np.uint32)
    v = np.concatenate([bits.view(np.float32),
                        np.random.default_rng(2).standard_normal(52).astype(np.float32)])
    v = v.reshape(4, 16)
    got, want = kernels.round_bf16(v), ref.round_bfloat16(v)
    assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    g = got.reshape(-1)
    assert g[0] == 1.0 and g[1] == np.float32(1.015625)   # ties to even, both ways
    assert np.isinf(g[3]) and np.isnan(g[6]) and np.isnan(g[7])
    assert (got.view(np.uint32) & 0xFFFF == 0).all()


@pytest.mark.parametrize("mode", MODES)
def test_weights_are_quantised_as_the_reference_says(mode):
    lstm = lstmx.LSTM(5, 6, num_layers=2, proj_size=3, peephole=True, seed=3)
    lstm.weight_hh_l1[1] = 0                       # a zero row
    state = lstm.quantize(mode).state_dict()
    for name, value in lstm.state_dict().items():
        base = name.split("_l")[0]
        if base not in ("weight_ih", "weight_hh", "weight_hr"):
            assert state[name].dtype == np.float32
            assert_array_equal(state[name], value)
        elif mode == "int8":
            q, s = ref.quantize_weights(value)
            assert_array_equal(state[name], q)
            assert_array_equal(state[name.replace(base, base + "_scale")], s)
            assert state[name].dtype == np.int8 and np.abs(q.astype(int)).max() <= 127
        else:
            assert state[name].dtype == np.uint16
            assert_array_equal(ref.bfloat16_values(state[name]), ref.round_bfloat16(value))
    if mode == "int8":
        assert state["weight_hh_scale_l1"][1] == 1 and (state["weight_hh_l1"][1] == 0).all()


# ------------------------------------------------------------------------ against the reference

OPTIONS = [
    dict(),
    dict(num_layers=2, bidirectional=True),
    dict(reverse=True),
    dict(proj_size=3),
    dict(peephole=True),
    dict(output_activation="identity"),
    dict(bias=False),
    dict(batch_first=True, num_layers=2, proj_size=2, peephole=True),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "default")
def test_matches_reference_every_option(mode, options):
    lstm = lstmx.LSTM(4, 7, seed=4, **options)
    q = lstm.quantize(mode)
    x, state, lens = problem(lstm.config, 5, 3, seed=5, lengths=True)
    for st, ln in [(None, None), (state, lens)]:
        y, (h, c) = q(x, st, ln)
        y_ref, (h_ref, c_ref) = run_reference(q, x, st, ln)
        assert y.dtype == h.dtype == c.dtype == np.float32
        for got, want in [(y, y_ref), (h, h_ref), (c, c_ref)]:
            assert_allclose(got, want, **CLOSE)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("I, H, T, B", [(1, 17, 1, 1), (1, 1, 3, 2), (33, 17, 2, 5),
                                        (3, 130, 2, 1)])
def test_odd_sizes(mode, I, H, T, B):
    lstm = lstmx.LSTM(I, H, seed=6, bidirectional=True)
    q = lstm.quantize(mode)
    x, state, _ = problem(lstm.config, T, B, seed=7)
    y, (h, c) = q(x, state)
    y_ref, (h_ref, c_ref) = run_reference(q, x, state)
    for got, want in [(y, y_ref), (h, h_ref), (c, c_ref)]:
        assert_allclose(got, want, **CLOSE)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reverse", [False, True])
def test_long_input_projection_spans_several_chunks(mode, reverse):
    # More rows than one chunk of the input projection and than a row block of the products.
    # Each row's arithmetic does not depend on the chunks: the same bits as one step at a
    # time. (Against the reference, sizes this large would meet activations whose rounding
    # differs between the two float32 computations, by the last bit, at a tie.)
    lstm = lstmx.LSTM(3, 256, reverse=reverse, seed=8)
    q = lstm.quantize(mode)
    x, state, _ = problem(lstm.config, 9, 130, seed=9)
    y, (h, c) = q(x, state)
    steps = range(8, -1, -1) if reverse else range(9)
    for t in steps:
        y_t, state = q(x[t:t + 1], state)
        assert_array_equal(y_t[0], y[t])
    assert_array_equal(state[0], h)
    assert_array_equal(state[1], c)


@pytest.mark.parametrize("mode", MODES)
def test_unbatched_input_is_one_batch_row(mode):
    lstm = lstmx.LSTM(4, 5, num_layers=2, seed=10)
    q = lstm.quantize(mode)
    x, state, _ = problem(lstm.config, 6, 1, seed=11)
    y1, (h1, c1) = q(x[:, 0], (state[0][:, 0], state[1][:, 0]))
    y, (h, c) = q(x, state)
    assert_array_equal(y1, y[:, 0])
    assert_array_equal(h1, h[:, 0])
    assert_array_equal(c1, c[:, 0])


@pytest.mark.parametrize("mode", MODES)
def test_cell_matches_reference(mode):
    cell = lstmx.LSTMCell(6, 9, peephole=True, seed=12)
    q = cell.quantize(mode)
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    h0, c0 = (rng.standard_normal((4, 9)).astype(np.float32) for _ in range(2))
    h, c = q(x, (h0, c0))
    y_ref, (h_ref, c_ref) = ref.lstm_forward(q.state_dict(), q.config, mode, x[None],
                                             h0[None], c0[None], bf16_sums=BF16_SUMS)
    assert_allclose(h, h_ref[0], **CLOSE)
    assert_allclose(c, c_ref[0], **CLOSE)
    h2, c2 = q(x)
    assert h2.shape == c2.shape == (4, 9)


# ------------------------------------------------------------------------ saturating inputs

@pytest.mark.parametrize("mode", MODES)
def test_nan_reaches_the_outputs_the_float_model_reaches(mode):
    lstm = lstmx.LSTM(4, 6, seed=14)
    q = lstm.quantize(mode)
    x, _, _ = problem(lstm.config, 5, 3, seed=15)
    x[2, 1, 0] = np.nan
    y, (h, c) = q(x)
    y_f, (h_f, c_f) = lstm(x)
    assert_array_equal(np.isnan(y), np.isnan(y_f))
    assert_array_equal(np.isnan(h), np.isnan(h_f))
    assert np.isnan(y[2:, 1]).all() and not np.isnan(y[:, [0, 2]]).any()


def test_an_infinite_input_is_nan_in_its_row_only_in_int8():
    # The float model's product of an infinity is +-inf, which saturates the gates; int8 has
    # no scale for an infinite row and makes its products NaN (docs/quantization.md).
    lstm = lstmx.LSTM(4, 6, seed=14)
    x, _, _ = problem(lstm.config, 5, 3, seed=15)
    x[2, 1, 0] = np.inf
    y, (h, c) = lstm.quantize("int8")(x)
    assert np.isnan(y[2:, 1]).all() and np.isnan(c[0, 1]).all()
    assert np.isfinite(np.delete(y, 1, axis=1)).all() and np.isfinite(y[:2]).all()
    y_b, (h_b, c_b) = lstm.quantize("bfloat16")(x)   # as the float model: saturated gates
    y_f, (h_f, c_f) = lstm(x)
    assert np.isfinite(y_b).all() and np.isfinite(y_f).all()
    assert_array_equal(np.abs(y_b[2, 1]) < 1e-30, np.abs(y_f[2, 1]) < 1e-30)


def test_too_deep_an_int8_product_is_refused():
    with pytest.raises(ValueError, match="at most 66304 inputs; this model's largest product "
                                         "sums over 66305"):
        lstmx.LSTM(66305, 1).quantize("int8")


@pytest.mark.parametrize("mode", MODES)
def test_nan_in_padding_past_lengths_changes_nothing(mode):
    lstm = lstmx.LSTM(4, 6, bidirectional=True, seed=16)
    q = lstm.quantize(mode)
    x, _, _ = problem(lstm.config, 5, 3, seed=17)
    lens = np.array([5, 2, 4])
    y, (h, c) = q(x, lengths=lens)
    x[2:, 1] = np.nan
    x[4:, 2] = np.inf
    y2, (h2, c2) = q(x, lengths=lens)
    assert_array_equal(y, y2)
    assert_array_equal(h, h2)


@pytest.mark.parametrize("I", [1, 70])
def test_full_scale_inputs_against_full_scale_weights(I):
    # Every input quantises to +-127 and every weight to +-127: each pair of products the
    # generic int8 kernels add in int16 is at its extreme (+-32258), and vpdpbusd's bytes
    # q + 128 reach 255 and 1.
    rng = np.random.default_rng(31)
    lstm = lstmx.LSTM(I, 17, num_layers=2, seed=30)
    for name in lstm.parameters():
        if name.startswith("weight"):
            W = getattr(lstm, name)
            W[...] = np.where(rng.random(W.shape) < 0.5, -0.5, 0.5)
    q = lstm.quantize("int8")
    x = np.where(rng.random((6, 5, I)) < 0.5, -3, 3).astype(np.float32)
    q_x, _ = ref.quantize_activations(x.reshape(-1, I))
    assert (np.abs(q_x.astype(int)) == LEVELS).all()
    assert (np.abs(q.state_dict()["weight_ih_l0"].astype(int)) == 127).all()
    y, (h, c) = q(x)
    y_ref, (h_ref, c_ref) = run_reference(q, x)
    assert_allclose(y, y_ref, **CLOSE)
    assert_allclose(c, c_ref, **CLOSE)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scale", [1e30, 1e-30, 0.0])
def test_huge_tiny_and_zero_inputs(mode, scale):
    lstm = lstmx.LSTM(4, 6, seed=18)
    q = lstm.quantize(mode)
    x, state, _ = problem(lstm.config, 3, 2, seed=19)
    x *= np.float32(scale)
    y, (h, c) = q(x, state)
    y_ref, (h_ref, c_ref) = run_reference(q, x, state)
    assert np.isfinite(y).all() and np.isfinite(c).all()
    assert_allclose(y, y_ref, **CLOSE)
    assert_allclose(c, c_ref, **CLOSE)


# ------------------------------------------------------------------------ threads and variants

# The bfloat16 products run on BLAS, whose results may depend on its own thread count
# (docs/guarantees.md, "Determinism"), as the float models' baseline products do.
@pytest.mark.parametrize("mode", ["int8"])
@pytest.mark.parametrize("B,T", [(70, 3), (37, 3), (12, 60), (3, 40)])
def test_threads_give_the_same_bits_as_one(mode, B, T):
    # 70 and 37 rows: a team that splits the batch (37: an odd last row, alone in its
    # pair); 12 rows over 60 steps: a team over several chunks; 3 rows, too few to share:
    # the products split their columns where they are large enough (the input projection
    # of a chunk of 40 steps).
    lstm = lstmx.LSTM(40, 160, num_layers=2, proj_size=100, seed=20)
    q = lstm.quantize(mode)
    x, state, lens = problem(lstm.config, T, B, seed=21, lengths=True)
    outs = []
    for threads in (1, 2, 3):
        with threadpool_limits(threads):
            y, (h, c) = q(x, state, lens)
        outs.append((y, h, c))
    for other in outs[1:]:
        for a, b in zip(other, outs[0]):
            assert_array_equal(a, b)


VARIANT_CHECK = """
import hashlib, numpy as np, lstmx
from lstmx import _dispatch
from lstmx import reference, reference_quantized as ref
from numpy.testing import assert_allclose
assert _dispatch.variant == {variant!r}, _dispatch.variant
kernels = _dispatch.quantized()
assert kernels.__name__.endswith({suffix!r}), kernels.__name__
rng = np.random.default_rng(0)
A = rng.integers(-127, 128, (37, 544)).astype(np.int8)
W = rng.integers(-127, 128, (84, 544)).astype(np.int8)
assert (kernels.int_matmul(A, W) == ref.int_product(A, W)).all()
assert (kernels.INT8_PRODUCTS, kernels.BF16_PRODUCTS) in {products!r}, kernels.INT8_PRODUCTS
for mode in ("int8", "bfloat16"):
    for I, H, kw, T, B in [(5, 7, dict(num_layers=2, bidirectional=True, peephole=True,
                                       proj_size=3), 4, 3),
                           (1, 17, dict(), 9, 5), (40, 33, dict(proj_size=20), 7, 13)]:
        lstm = lstmx.LSTM(I, H, seed=0, **kw)
        q = lstm.quantize(mode)
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        lengths = rng.integers(1, T + 1, B)
        y, (h, c) = q(x, lengths=lengths)
        y_ref, (h_ref, c_ref) = ref.lstm_forward(
            q.state_dict(), q.config, mode, x, lengths=lengths,
            bf16_sums="vdpbf16ps" if kernels.BF16_PRODUCTS == "vdpbf16ps" else "matmul")
        assert_allclose(y, y_ref, rtol=2e-5, atol=2e-6)
        assert_allclose(c, c_ref, rtol=2e-5, atol=2e-6)
# Digests of the integer sums, and of an int8 model's outputs.
q = lstmx.LSTM(40, 100, seed=0).quantize("int8")
y, _ = q(rng.standard_normal((6, 37, 40)).astype(np.float32))
print(hashlib.sha256(kernels.int_matmul(A, W).tobytes()).hexdigest(),
      hashlib.sha256(y.tobytes()).hexdigest())
"""


def cpu_flags():
    """The CPU's feature flags, as /proc/cpuinfo lists them."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def expected_products(variant, dot):
    """(INT8_PRODUCTS, BF16_PRODUCTS) of a process with LSTMX_KERNELS=variant and
    LSTMX_DOT_PRODUCTS=dot: the instructions where the build may use them and the CPU has
    them (AMX's tiles in the AVX-512 build unless dot is "vector"; vpdpbusd on 512-bit
    vectors in the AVX-512 build; on 256-bit ones in the AVX2 build, VEX-encoded on
    AVX-VNNI, else EVEX-encoded on AVX512_VNNI with AVX512VL)."""
    flags = cpu_flags()
    on = dot != "generic"
    amx = dot == "auto" and variant == "avx512"
    int8 = "generic"
    if amx and "avx512_vnni" in flags and amx_granted("amx_int8"):
        int8 = "tdpbusd"
    elif on and variant == "avx512" and "avx512_vnni" in flags:
        int8 = "vpdpbusd"
    elif on and variant == "avx2" and "avx_vnni" in flags:
        int8 = "vpdpbusd-avxvnni"
    elif on and variant == "avx2" and {"avx512_vnni", "avx512vl"} <= flags:
        int8 = "vpdpbusd-avx512vl"
    bf16 = "vdpbf16ps" if on and variant == "avx512" and "avx512_bf16" in flags else "blas"
    return (int8, "tdpbf16ps" if bf16 == "vdpbf16ps" and amx and amx_granted("amx_bf16")
            else bf16)


def test_each_available_variant_matches_reference_with_the_same_integer_products():
    # Every variant, and the AVX-512 and AVX2 ones also with their dot-product instructions
    # turned off (LSTMX_DOT_PRODUCTS=generic: the path of CPUs without VNNI or BF16), the
    # AVX-512 one also with AMX off (=vector: the path of AVX-512 CPUs without AMX).
    package_root = os.path.dirname(os.path.dirname(lstmx.__file__))
    sums, outputs = set(), set()
    for variant in _dispatch.available():
        for dot in (("auto", "vector", "generic") if variant == "avx512"
                    else ("auto", "generic") if variant == "avx2" else ("auto",)):
            suffix = "_quantized" if variant == "baseline" else f"_quantized_{variant}"
            products = [expected_products(variant, dot)]
            env = dict(os.environ, LSTMX_KERNELS=variant, LSTMX_DOT_PRODUCTS=dot,
                       PYTHONPATH=os.pathsep.join([package_root,
                                                   os.environ.get("PYTHONPATH", "")]))
            code = VARIANT_CHECK.format(variant=variant, suffix=suffix, products=products)
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, timeout=300)
            assert out.returncode == 0, out.stderr
            int_digest, y_digest = out.stdout.split()
            sums.add(int_digest)
            if variant != "baseline":
                outputs.add(y_digest)
    assert len(sums) == 1
    # The builds with FMA scale the sums back (vpdpbusd's 512- and 256-bit epilogues, the
    # generic tiles') and run the cell with the same operations: the same bits. The
    # baseline build rounds a multiply and an add apart (within the reference's tolerance).
    assert len(outputs) <= 1


def test_an_unknown_dot_products_setting_is_refused_by_name():
    env = dict(os.environ, LSTMX_DOT_PRODUCTS="amx")
    out = subprocess.run([sys.executable, "-c", "from lstmx import _dispatch; "
                          "_dispatch.quantized()"], env=env, capture_output=True, text=True,
                         timeout=300, cwd=os.path.dirname(os.path.dirname(lstmx.__file__)))
    assert out.returncode != 0
    assert ("LSTMX_DOT_PRODUCTS must be 'auto', 'vector' or 'generic'; got 'amx'"
            in out.stderr)


def test_dot_product_instructions_are_used_where_the_cpu_has_them():
    assert (kernels.INT8_PRODUCTS, kernels.BF16_PRODUCTS) == expected_products(
        _dispatch.variant, os.environ.get("LSTMX_DOT_PRODUCTS", "auto"))


@given(rows=st.integers(1, 20), N=st.integers(1, 70), K=st.integers(1, 80),
       seed=st.integers(0, 2 ** 32 - 1))
def test_bfloat16_products_sum_in_float32(rows, N, K, seed):
    # tdpbf16ps, vdpbf16ps (or BLAS on the values) sum products of bfloat16 values, each
    # exact in float32, with float32 roundings: within K * eps32 * sum |a w| of the exact sum.
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, K)).astype(np.float32)
    w = rng.standard_normal((N, K)).astype(np.float32)
    bits = lambda v: (ref.round_bfloat16(v).view(np.uint32) >> 16).astype(np.uint16)
    A, W = bits(a), bits(w)
    av, wv = ref.bfloat16_values(A).astype(np.float64), ref.bfloat16_values(W).astype(np.float64)
    got = kernels.bf16_matmul(A, W)
    vector = kernels.bf16_matmul(A, W, tiles=False)    # vdpbf16ps (or BLAS) even on AMX
    assert got.dtype == vector.dtype == np.float32 and got.shape == vector.shape == (rows, N)
    if kernels.BF16_PRODUCTS in ("vdpbf16ps", "tdpbf16ps"):
        # vdpbf16ps's own order and rounding, bit for bit (the path of small layers on AMX).
        assert_array_equal(vector, ref.vdpbf16ps_product(ref.bfloat16_values(A),
                                                         ref.bfloat16_values(W)))
    exact = av @ wv.T
    bound = (K + 1) * EPS32 * (np.abs(av) @ np.abs(wv).T)
    assert (np.abs(got - exact) <= bound).all() and (np.abs(vector - exact) <= bound).all()


STEP_DIGEST = """
import hashlib, numpy as np, lstmx
from lstmx import _dispatch
rng = np.random.default_rng(5)
for I, H in [(32, 100), (128, 256)]:  # 53 K and 393 K multiply-adds a step at a batch of 1
    q = lstmx.LSTM(I, H, seed=1).quantize("bfloat16")
    y, _ = q(rng.standard_normal((20, 1, I)).astype(np.float32))
    print(hashlib.sha256(y.tobytes()).hexdigest())
print(_dispatch.quantized().BF16_PRODUCTS)
"""


def test_bfloat16_layers_with_little_work_a_step_keep_the_vector_instructions():
    # Where AMX runs, a bfloat16 layer with fewer than AMX_BF16_STEP_WORK multiply-adds a
    # step (B 4H (I + Hout)) still runs on vdpbf16ps: the same bits as a process without AMX
    # (LSTMX_DOT_PRODUCTS=vector); a larger one runs on the tiles, whose sums differ.
    package_root = os.path.dirname(os.path.dirname(lstmx.__file__))
    digests = {}
    for dot in ("auto", "vector"):
        env = dict(os.environ, LSTMX_DOT_PRODUCTS=dot,
                   PYTHONPATH=os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]))
        out = subprocess.run([sys.executable, "-c", STEP_DIGEST], env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        digests[dot] = out.stdout.split()
    small, large, products = digests["auto"]
    assert small == digests["vector"][0]
    assert (large != digests["vector"][1]) == (products == "tdpbf16ps")


def test_each_sum_depends_on_its_own_row_and_channel_only():
    # Whichever rows share its tile (AMX's 16, the vector kernels' 6) and wherever its channel
    # falls in a vector, a sum is the same bits: the threads' and the batch's splits cannot
    # change a result. 37 rows: two whole AMX tiles and 5; from row 5 on: other neighbours.
    rng = np.random.default_rng(12)
    a = rng.standard_normal((37, 200)).astype(np.float32)
    w = rng.standard_normal((50, 200)).astype(np.float32)
    bits = lambda v: (ref.round_bfloat16(v).view(np.uint32) >> 16).astype(np.uint16)
    A, W = bits(a), bits(w)
    full = kernels.bf16_matmul(A, W)
    assert_array_equal(kernels.bf16_matmul(A[5:], W), full[5:])
    assert_array_equal(kernels.bf16_matmul(A[:1], W), full[:1])
    assert_array_equal(kernels.bf16_matmul(A, W[3:]), full[:, 3:])
    qa = rng.integers(-LEVELS, LEVELS + 1, (37, 4 * STEP)).astype(np.int8)
    qw = rng.integers(-127, 128, (52, 4 * STEP)).astype(np.int8)
    assert_array_equal(kernels.int_matmul(qa[5:], qw), kernels.int_matmul(qa, qw)[5:])


# ------------------------------------------------------------------------ against the float model

EPS32 = np.finfo(np.float32).eps / 2  # unit roundoff of float32
U_BF16 = 2.0 ** -9                    # of bfloat16 (8 significant bits)


def product_bound(v, W, mode):
    """Bound of |q(v) q(W).T - v W.T| from docs/quantization.md, with float32 rounding of the
    sums of both models, for v (B, K) and W (N, K) in float64."""
    K = v.shape[1]
    absprod = np.abs(v) @ np.abs(W).T
    if mode == "int8":
        s_v = np.abs(v).max(axis=1, keepdims=True) / float(ref.ACTIVATION_LEVELS)
        s_w = np.abs(W).max(axis=1)[None, :] / 127
        bound = (s_v / 2) * np.abs(W).sum(axis=1)[None, :] + (s_w / 2) * np.abs(v).sum(
            axis=1, keepdims=True) + K * s_v * s_w / 4
    else:
        bound = (2 * U_BF16 + U_BF16 ** 2) * absprod
    return bound + 2 * (K + 4) * EPS32 * absprod


def step_bound(dz, c0, c, peep, identity):
    """Bound of the errors of c_t and h_t from one of at most dz in each pre-activation
    (docs/quantization.md): sigmoid is 1/4-Lipschitz, tanh 1-Lipschitz, |i|, |g|, |o| <= 1,
    and the quantised models' sigmoid and tanh add their own errors."""
    H = c0.shape[1]
    e_s, e_t = ref.SIGMOID_ERROR, ref.TANH_ERROR
    dzi, dzf, dzg, dzo = dz[:, :H], dz[:, H:2 * H], dz[:, 2 * H:3 * H], dz[:, 3 * H:]
    di, df, dg = dzi / 4 + e_s, dzf / 4 + e_s, dzg + e_t
    dc = df * np.abs(c0) + di * (1 + dg) + dg
    p_o = 0 if peep is None else np.abs(peep[2])
    do = (dzo + p_o * dc) / 4 + e_s
    act, dact = (np.abs(c) + dc, dc) if identity else (1, dc + e_t)
    dh = do * act + dact + do * dact
    slack = 16 * EPS32 * (1 + np.abs(c) + np.abs(c0))  # the element-wise float32 work
    return dc + slack, dh + slack


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("options", [dict(), dict(peephole=True),
                                     dict(output_activation="identity")],
                         ids=["default", "peephole", "identity"])
def test_one_step_is_within_the_derived_bound_of_the_float_model(mode, options):
    rng = np.random.default_rng(22)
    cell = lstmx.LSTMCell(48, 40, seed=23, **options)
    q = cell.quantize(mode)
    x = rng.standard_normal((6, 48)).astype(np.float32)
    h0 = rng.uniform(-1, 1, (6, 40)).astype(np.float32)
    c0 = rng.standard_normal((6, 40)).astype(np.float32)
    h, c = q(x, (h0, c0))
    p = {k: v.astype(np.float64) for k, v in cell.parameters().items()}
    # The float model in float64: the quantised one's float32 rounding is in the bound.
    h_f, c_f, _ = reference.cell_forward(
        x.astype(np.float64), h0.astype(np.float64), c0.astype(np.float64), p["weight_ih"],
        p["weight_hh"], p["bias_ih"] + p["bias_hh"],
        peep=np.stack([p["weight_ci"], p["weight_cf"], p["weight_co"]])
        if cell.config.peephole else None, act=cell.config.output_activation)
    dz = (product_bound(x.astype(np.float64), p["weight_ih"], mode)
          + product_bound(h0.astype(np.float64), p["weight_hh"], mode))
    peep = np.stack([p["weight_ci"], p["weight_cf"], p["weight_co"]]) \
        if cell.config.peephole else None
    dc, dh = step_bound(dz, c0.astype(np.float64), c_f, peep,
                        cell.config.output_activation == "identity")
    assert (np.abs(c - c_f) <= dc).all()
    assert (np.abs(h - h_f) <= dh).all()
    assert np.abs(h - h_f).max() > 0  # the quantisation did round something


@pytest.mark.parametrize("mode", MODES)
def test_layer_step_is_within_the_derived_bound(mode):
    lstm = lstmx.LSTM(20, 16, seed=24)
    q = lstm.quantize(mode)
    x, (h0, c0), _ = problem(lstm.config, 1, 5, seed=25)
    h0 = np.tanh(h0)
    y, (h, c) = q(x, (h0, c0))
    p = {k: v.astype(np.float64) for k, v in lstm.parameters().items()}
    h_f, c_f, _ = reference.cell_forward(
        x[0].astype(np.float64), h0[0].astype(np.float64), c0[0].astype(np.float64),
        p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"] + p["bias_hh_l0"])
    dz = (product_bound(x[0].astype(np.float64), p["weight_ih_l0"], mode)
          + product_bound(h0[0].astype(np.float64), p["weight_hh_l0"], mode))
    dc, dh = step_bound(dz, c0[0].astype(np.float64), c_f, None, False)
    assert (np.abs(c[0] - c_f) <= dc).all()
    assert (np.abs(h[0] - h_f) <= dh).all()
    assert_array_equal(y[0], h[0])


# ------------------------------------------------------------------------ API

def test_quantize_rejects_unknown_mode():
    for model in (lstmx.LSTM(2, 3), lstmx.LSTMCell(2, 3)):
        with pytest.raises(ValueError, match=r"mode must be one of \('int8', 'bfloat16'\); "
                                             r"got 'int4'"):
            model.quantize("int4")
        with pytest.raises(ValueError, match="mode must be one of"):
            model.quantize(None)


def test_quantize_refuses_non_finite_weights():
    lstm = lstmx.LSTM(2, 3)
    lstm.weight_hh_l0[0, 0] = np.nan
    with pytest.raises(ValueError, match="'weight_hh_l0' has non-finite values"):
        lstm.quantize("int8")


def test_float64_model_quantises_to_float32_in_and_out():
    lstm = lstmx.LSTM(3, 4, dtype=np.float64, seed=26)
    q = lstm.quantize("int8")
    assert q.config.dtype == np.float32
    y, _ = q(np.ones((2, 1, 3)))
    assert y.dtype == np.float32


@pytest.mark.parametrize("mode", MODES)
def test_state_dict_round_trip_and_pickle(mode):
    lstm = lstmx.LSTM(3, 8, num_layers=2, bidirectional=True, proj_size=5, peephole=True,
                      seed=27)
    q = lstm.quantize(mode)
    state = q.state_dict()
    names = list(state)
    if mode == "int8":
        assert names[:3] == ["weight_ih_l0", "weight_ih_scale_l0", "weight_hh_l0"]
        assert state["weight_hr_scale_l1_reverse"].shape == (5,)
        assert state["weight_hr_l1_reverse"].dtype == np.int8
    else:
        assert state["weight_hh_l0"].dtype == np.uint16 and "weight_hh_scale_l0" not in state
    q2 = QuantizedLSTM.from_state_dict(q.config, mode, state)
    q3 = pickle.loads(pickle.dumps(q))
    x, st, lens = problem(q.config, 4, 2, seed=28, lengths=True)
    y = q(x, st, lens)[0]
    assert_array_equal(q2(x, st, lens)[0], y)
    assert_array_equal(q3(x, st, lens)[0], y)
    state["weight_ih_l0"][...] = 0                 # a copy: the model is unchanged
    assert_array_equal(q(x, st, lens)[0], y)
    assert q.mode == mode and q.config == dataclasses.replace(lstm.config, dtype=np.float32)
    assert f"mode={mode!r}" in repr(q) and q.nbytes > 0


def test_int8_memory_is_about_a_quarter_of_the_float_models():
    lstm = lstmx.LSTM(64, 128, seed=29)
    q = lstm.quantize("int8")
    float_bytes = sum(a.nbytes for a in lstm.parameters().values())
    assert q.nbytes < 0.3 * float_bytes


def test_bfloat16_memory_is_half_the_float_models_on_vdpbf16ps():
    # Weights as bfloat16 where vdpbf16ps reads them (rows padded to 16: none here), as
    # float32 values for BLAS elsewhere; the biases stay float32 either way.
    lstm = lstmx.LSTM(64, 128, seed=29)
    q = lstm.quantize("bfloat16")
    params = lstm.parameters()
    weights = sum(a.nbytes for name, a in params.items() if name.startswith("weight"))
    biases = 4 * 128 * 4                           # b_ih + b_hh, summed once
    half = kernels.BF16_PRODUCTS != "blas"
    assert q.nbytes == (weights // 2 if half else weights) + biases


def test_from_state_dict_validates_names_dtypes_shapes_and_scales():
    cell = lstmx.LSTMCell(3, 4, seed=30)
    q = cell.quantize("int8")
    state = q.state_dict()
    assert list(state)[:2] == ["weight_ih", "weight_ih_scale"]
    back = QuantizedLSTMCell.from_state_dict(q.config, "int8", state)
    x = np.ones((2, 3), np.float32)
    assert_array_equal(back(x)[0], q(x)[0])
    with pytest.raises(KeyError, match=r"missing \['weight_hh_scale'\]"):
        QuantizedLSTMCell.from_state_dict(q.config, "int8",
                                          {k: v for k, v in state.items()
                                           if k != "weight_hh_scale"})
    with pytest.raises(ValueError, match=r"state\['weight_ih'\] must be int8 with shape "
                                         r"\(16, 3\); got float32"):
        QuantizedLSTMCell.from_state_dict(q.config, "int8",
                                          {**state, "weight_ih": np.zeros((16, 3), np.float32)})
    with pytest.raises(ValueError, match="must be int8 with shape"):
        QuantizedLSTMCell.from_state_dict(q.config, "int8",
                                          {**state, "weight_ih": np.zeros((16, 4), np.int8)})
    for bad in (0.0, -1.0, np.nan, np.inf):
        scales = state["weight_hh_scale"].copy()
        scales[2] = bad
        with pytest.raises(ValueError, match="finite positive scales"):
            QuantizedLSTMCell.from_state_dict(q.config, "int8",
                                              {**state, "weight_hh_scale": scales})
    with pytest.raises(ValueError, match="mode must be one of"):
        QuantizedLSTMCell.from_state_dict(q.config, "int16", state)
    with pytest.raises(TypeError, match="config must be an LSTMConfig"):
        QuantizedLSTM.from_state_dict({}, "int8", state)
    with pytest.raises(TypeError, match="must be a NumPy array"):
        QuantizedLSTMCell.from_state_dict(q.config, "int8",
                                          {**state, "bias_ih": list(state["bias_ih"])})
    with pytest.raises(KeyError, match="missing"):
        QuantizedLSTM.from_state_dict(lstmx.LSTM(3, 4).config, "int8", state)
    swapped = {k: v.astype(v.dtype.newbyteorder(">")) for k, v in state.items()}
    assert_array_equal(QuantizedLSTMCell.from_state_dict(q.config, "int8", swapped)(x)[0],
                       q(x)[0])


def test_a_parameter_reshaped_in_place_is_named():
    lstm = lstmx.LSTM(3, 4)
    lstm.parameters()["bias_hh_l0"].shape = (2, 8)
    with pytest.raises(ValueError, match=r"state\['bias_hh_l0'\] must be float32 with shape "
                                         r"\(16,\); got float32 with shape \(2, 8\)"):
        lstm.quantize("int8")


@pytest.mark.parametrize("mode", MODES)
def test_inputs_are_checked_as_the_float_model_checks_them(mode):
    lstm = lstmx.LSTM(3, 4, batch_first=True)
    q = lstm.quantize(mode)
    for bad in [np.ones((2, 5, 4)), np.ones((2, 5, 3), np.int64)]:
        with pytest.raises((ValueError, TypeError)) as want:
            lstm(bad)
        with pytest.raises(type(want.value), match=str(want.value).replace("(", r"\(")
                           .replace(")", r"\)")):
            q(bad)
    with pytest.raises(ValueError, match=r"lengths must be in \[1, 5\]"):
        q(np.ones((2, 5, 3)), lengths=[0, 5])
    with pytest.raises(ValueError, match=r"state\[1\] \(c0\) must have shape"):
        q(np.ones((2, 5, 3)), state=(np.zeros((1, 2, 4)), np.zeros((1, 2, 5))))


@pytest.mark.parametrize("mode", MODES)
def test_inputs_are_not_mutated(mode):
    lstm = lstmx.LSTM(3, 4, num_layers=2)
    q = lstm.quantize(mode)
    x, state, lens = problem(lstm.config, 4, 3, seed=31, lengths=True)
    copies = [x.copy(), state[0].copy(), state[1].copy(), lens.copy()]
    q(x, state, lens)
    for a, b in zip([x, state[0], state[1], lens], copies):
        assert_array_equal(a, b)
