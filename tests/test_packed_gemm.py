"""The kernels' packed GEMM (gemm_packed): whole tiles, tiles cut short in rows or columns."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from _helpers import DEPTHS, depth_block
from lstmx import _dispatch

pytestmark = pytest.mark.parametrize("variant", _dispatch.available())


@pytest.fixture(autouse=True, params=DEPTHS, ids=[f"depth{d}" for d in DEPTHS])
def depth(request, variant):
    with depth_block(variant, request.param):
        yield request.param


def run(variant, m, k, width, groups, add, bias, transpose_a, dtype, parts=1, seed=0):
    rng = np.random.default_rng(seed)
    n = groups * width
    A = rng.standard_normal((k, m) if transpose_a else (m, k)).astype(dtype)
    B = rng.standard_normal((k, n)).astype(dtype)
    C0 = rng.standard_normal((m, n)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype) if bias else None
    C = C0.copy() if add else np.full((m, n), np.nan, dtype)  # not added: never read
    _dispatch.load(variant).packed_product(A, B, C, b, add, transpose_a, groups, parts)
    opA = A.T if transpose_a else A
    want = opA.astype(np.float64) @ B + (C0 if add else 0) + (b if bias else 0)
    # Summation error grows like sqrt(k) * eps * |A||B| entries.
    scale = (np.abs(opA).astype(np.float64) @ np.abs(B) + (np.abs(C0) if add else 0)
             + (np.abs(b) if bias else 0))
    tol = 4 * np.finfo(dtype).eps * np.sqrt(k)
    assert np.all(np.abs(C - want) <= tol * scale), np.abs(C - want).max()
    return C


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,width,groups", [
    (32, 64, 50, 4),    # H = 50: a full strip and one of 18 columns per gate
    (32, 64, 100, 4),   # 3 full strips and 4 columns
    (37, 20, 70, 4),    # rows past the last tile on every ISA
    (4, 100, 300, 4),   # a batch smaller than a tile
    (2, 33, 65, 1),     # two rows (rows_tile)
    (3, 40, 100, 4),    # three rows (rows_tile), a strip of 4 columns per gate
    (9, 700, 70, 4),    # three rows past a tile (AVX2) with k past the depth block
    (14, 1100, 40, 2),  # a pair past the tiles (AVX2) with k past the depth block
    (10, 600, 70, 4),   # a pair past the tiles (AVX-512), an edge tile (AVX2)
    (1, 7, 1, 1),       # one column, one row
    (300, 1, 31, 1),    # depth one
    (9, 1100, 33, 2),   # k past the depth block: blocks summed apart, then added to C
    (128, 1030, 40, 4), # one block of 21 tiles, then two rows (AVX2), in two blocks of k
    (193, 530, 33, 2),  # two blocks of tiles, then a lone row (AVX2, AVX-512)
    (400, 20, 45, 1),   # blocks of tiles, then four rows (AVX2), seven (AVX-512)
    (48, 70, 33, 1),    # one column past a strip: half a tile (half_tile)
    (24, 600, 12, 4),   # 12 columns a gate: half a tile (AVX-512), an edge tile (AVX2)
])
@pytest.mark.parametrize("add,bias,transpose_a", [(False, False, False), (True, True, False),
                                                  (False, True, True), (True, False, True)])
def test_matches_float64_product(variant, m, k, width, groups, add, bias, transpose_a, dtype):
    run(variant, m, k, width, groups, add, bias, transpose_a, dtype)


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 40), k=st.integers(1, 70), width=st.integers(1, 100),
       groups=st.integers(1, 4), add=st.booleans(), bias=st.booleans(),
       transpose_a=st.booleans(), double=st.booleans(), seed=st.integers(0, 99))
def test_any_shape(variant, m, k, width, groups, add, bias, transpose_a, double, seed):
    run(variant, m, k, width, groups, add, bias, transpose_a,
        np.float64 if double else np.float32, seed=seed)


@pytest.mark.parametrize("parts", [2, 3, 5])
@pytest.mark.parametrize("width", [17, 64, 100])
def test_split_into_parts_is_bit_identical(variant, parts, width):
    # Threads split the strips of B: every column's result must not depend on the split.
    one = run(variant, 37, 45, width, 4, True, True, False, np.float32, parts=1, seed=3)
    split = run(variant, 37, 45, width, 4, True, True, False, np.float32, parts=parts, seed=3)
    np.testing.assert_array_equal(split, one)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [4, 5, 8, 10, 14, 16, 23])
@pytest.mark.parametrize("add,bias", [(False, False), (True, True)])
def test_a_row_has_the_same_bits_in_any_kernel(variant, m, add, bias, dtype):
    # Dropping the first two rows moves every other row to another kernel (whole tile, tile
    # cut short, quad_tile or rows_tile, as TILE_ROWS 6 or 8 falls): its bits must not change,
    # as the threaded backward's dW and dU rely on (no count of rows here leaves one row,
    # which gemm_small runs in its own order).
    rng = np.random.default_rng(m)
    k, width, groups = 600, 40, 2
    A = rng.standard_normal((m, k)).astype(dtype)
    B = rng.standard_normal((k, groups * width)).astype(dtype)
    C0 = rng.standard_normal((m, groups * width)).astype(dtype)
    b = rng.standard_normal(groups * width).astype(dtype) if bias else None
    kernels = _dispatch.load(variant)
    whole = C0.copy()
    kernels.packed_product(A, B, whole, b, add, False, groups, 1)
    part = C0[2:].copy()
    kernels.packed_product(np.ascontiguousarray(A[2:]), B, part, b, add, False, groups, 1)
    np.testing.assert_array_equal(part, whole[2:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("add,bias,transpose_a", [(False, True, False), (True, False, True),
                                                  (True, True, False)])
def test_a_shallow_product_sums_as_the_tiles_do(variant, k, add, bias, transpose_a, dtype):
    # At a depth of 1 to 4 (an input projection of a few features) every row runs a row at
    # a time, not on the tiles; the tiles run it at any greater depth. A zero column of A
    # and zero row of B add an exact 0 to every sum (no sum is -0 here: the bias and C are
    # random), so the product at depth k + (5 - k) zeros must have the same bits.
    rng = np.random.default_rng(k)
    width, groups = 45, 2
    kernels = _dispatch.load(variant)
    for m in [1, 2, 3, 4, 5, 6, 7, 9, 13, 20, 33, 100]:
        A = rng.standard_normal((m, k)).astype(dtype)
        B = rng.standard_normal((k, groups * width)).astype(dtype)
        C0 = rng.standard_normal((m, groups * width)).astype(dtype)
        b = rng.standard_normal(groups * width).astype(dtype) if bias else None
        A5, B5 = np.zeros((m, 5), dtype), np.zeros((5, groups * width), dtype)
        A5[:, :k], B5[:k] = A, B
        shallow, deep = C0.copy(), C0.copy()
        for out, a, bb in [(shallow, A, B), (deep, A5, B5)]:
            a = np.ascontiguousarray(a.T) if transpose_a else a
            kernels.packed_product(a, bb, out, b, add, transpose_a, groups, 1)
        if m % 6 == 1 or m % 8 == 1:  # a lone row past the tiles runs on gemm_small
            shallow, deep = shallow[:m - 1], deep[:m - 1]
        np.testing.assert_array_equal(shallow, deep, err_msg=f"m={m}")
    run(variant, 33, k, width, groups, add, bias, transpose_a, dtype)


@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("transpose_a", [False, True])
def test_a_team_of_rows_gives_each_row_its_bits(variant, parts, transpose_a):
    # The teams of rows (forward, the regularised backward) split the batch at row_share's
    # boundaries and run each part as a product of its own (EDGE_ROWS: one row past the
    # tiles goes to gemm_small): every row must keep the bits it has in one product of all
    # rows, at every batch size (whole tiles, 2 or 3 rows, quads, tiles cut short, a last row).
    rng = np.random.default_rng(parts)
    kernels = _dispatch.load(variant)
    k, width = 70, 40
    B = rng.standard_normal((k, 2 * width)).astype(np.float32)
    b = rng.standard_normal(2 * width).astype(np.float32)
    for m in range(1, 41):
        cuts = kernels.row_split(m, parts)
        assert cuts[0] == 0 and cuts[-1] == m and cuts == sorted(cuts)
        At = rng.standard_normal((k, m) if transpose_a else (m, k)).astype(np.float32)
        A = At.T if transpose_a else At
        whole = np.zeros((m, 2 * width), np.float32)
        kernels.packed_product(At, B, whole, b, False, transpose_a, 2, 1)
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            if hi == lo:
                continue
            part = np.zeros((hi - lo, 2 * width), np.float32)
            rows = np.ascontiguousarray(A[lo:hi])
            kernels.packed_product(np.ascontiguousarray(rows.T) if transpose_a else rows, B,
                                   part, b, False, transpose_a, 2, 1)
            np.testing.assert_array_equal(part, whole[lo:hi], err_msg=f"m={m} {cuts}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,transpose_a", [(110, 200, False), (13, 1100, True),
                                             (200, 520, False), (60, 700, True)])
def test_packed_rows_have_the_same_bits_as_rows_in_place(variant, m, k, transpose_a, dtype):
    # Products this large read A from a packed copy of its row tiles, or in place when its
    # memory is refused: the sums, and so the bits, must be the same (m = 110, 200: several
    # blocks of row tiles; k = 1100: several blocks of k).
    rng = np.random.default_rng(m)
    A = rng.standard_normal((k, m) if transpose_a else (m, k)).astype(dtype)
    B = rng.standard_normal((k, 4 * 37)).astype(dtype)
    b = rng.standard_normal(4 * 37).astype(dtype)
    kernels = _dispatch.load(variant)
    packed, in_place = np.zeros((m, 4 * 37), dtype), np.zeros((m, 4 * 37), dtype)
    kernels.packed_product(A, B, packed, b, False, transpose_a, 4, 1)
    kernels.packed_product(A, B, in_place, b, False, transpose_a, 4, 1, pack_rows=False)
    np.testing.assert_array_equal(packed, in_place)


def test_rejects_mismatched_shapes(variant):
    k = _dispatch.load(variant)
    A, B, C = np.zeros((2, 3)), np.zeros((3, 4)), np.zeros((2, 4))
    with pytest.raises(ValueError, match="do not fit"):
        k.packed_product(A, np.zeros((4, 4)), C, None, False, False, 1, 1)
    with pytest.raises(ValueError, match="do not fit"):
        k.packed_product(A, B, C, None, False, False, 3, 1)
    with pytest.raises(ValueError, match="bias must have 4"):
        k.packed_product(A, B, C, np.zeros(3), False, False, 1, 1)


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 40), width=st.integers(1, 80), groups=st.integers(1, 4),
       double=st.booleans())
def test_packing_b_transposed_gives_the_same_strips(variant, k, width, groups, double):
    # W.T and U.T are packed from W and U, whose rows are contiguous (in blocks of registers
    # on AVX builds); B itself is packed row by row. Both must give the same bytes, the
    # padding of each group's last strip included.
    rng = np.random.default_rng(k * width)
    B = rng.standard_normal((k, groups * width)).astype(np.float64 if double else np.float32)
    kernels = _dispatch.load(variant)
    plain = kernels.pack(B, groups, False)
    assert not np.isnan(plain).any()
    np.testing.assert_array_equal(kernels.pack(np.ascontiguousarray(B.T), groups, True).view(
        f"u{B.itemsize}"), plain.view(f"u{B.itemsize}"))


def test_depth_follows_the_l1_and_refuses_other_depths(variant, depth):
    kernels = _dispatch.load(variant)
    # AVX-512's tile: half the depth where a strip's block of it fits two thirds of L1.
    avx512 = variant == "avx512"
    assert kernels.depth_for_l1(48 * 1024) == (256 if avx512 else 512)
    assert kernels.depth_for_l1(32 * 1024) == 512
    assert kernels.depth_for_l1(0) == 512
    with pytest.raises(ValueError, match=r"^depth must be 512 or 256; got 128$"):
        kernels.set_depth_block(128)
    assert kernels.get_depth_block() == depth
