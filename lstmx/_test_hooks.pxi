# Test hooks: the kernels' own activations and GEMMs, callable from Python for tests of accuracy.
#
# Included by _kernels.pyx, so that each kernel variant exposes its own.

include "_activations_hook.pxi"


def small_product(const floating[:, ::1] A, const floating[:, ::1] B, floating beta,
                  floating[:, ::1] C):
    """C := A @ B + beta * C with the kernels' own gemm_small; A (m, k), B (k, n), C (m, n)."""
    if A.shape[1] != B.shape[0] or C.shape[0] != A.shape[0] or C.shape[1] != B.shape[1]:
        raise ValueError(f"small_product: shapes {(A.shape[0], A.shape[1])} @ "
                         f"{(B.shape[0], B.shape[1])} do not give C's "
                         f"{(C.shape[0], C.shape[1])}")
    if C.shape[0] and C.shape[1]:
        with nogil:
            gemm_small(A.shape[0], B.shape[1], A.shape[1], &A[0, 0] if A.shape[1] else NULL,
                       A.shape[1], &B[0, 0] if B.shape[0] else NULL, B.shape[1], beta,
                       &C[0, 0], C.shape[1])


def packed_product(const floating[:, ::1] A, const floating[:, ::1] B, floating[:, ::1] C,
                   bias, bint add, bint transpose_a, Py_ssize_t groups, Py_ssize_t parts,
                   bint pack_rows=True):
    """C := op(A) @ B (+ C when ``add``) (+ bias on every row) with the kernels' own
    gemm_packed: B (k, n) packed in strips, its n columns in ``groups`` groups of equal
    width; op(A) is A (m, k), or A.T for ``transpose_a`` (A is then (k, m)); bias (n,) of
    C's dtype or None. The strips are computed in ``parts`` calls, as threads split them.
    ``pack_rows=False`` runs the tiles on A in place, as when packing memory is refused."""
    cdef Py_ssize_t m = C.shape[0], n = C.shape[1], k = B.shape[0], part
    if (B.shape[1] != n or groups < 1 or n % groups or parts < 1
            or (A.shape[1] if transpose_a else A.shape[0]) != m
            or (A.shape[0] if transpose_a else A.shape[1]) != k or m < 1 or n < 1 or k < 1):
        raise ValueError(f"packed_product: shapes A {(A.shape[0], A.shape[1])}, B "
                         f"{(B.shape[0], B.shape[1])}, C {(m, n)}, groups {groups} and "
                         f"parts {parts} do not fit")
    cdef Py_ssize_t width = n // groups, per = strips(width)
    cdef const floating[::1] b = bias if bias is not None else None
    if b is not None and b.shape[0] != n:
        raise ValueError(f"packed_product: bias must have {n} elements; got {b.shape[0]}")
    Bp_array = np.zeros(groups * per * k * TILE_COLS,
                        np.float32 if floating is float else np.float64)
    cdef floating[::1] Bp = Bp_array
    with nogil:
        pack_strips(k, groups, width, &B[0, 0], n, 1, 0, per, &Bp[0])
        for part in range(parts):
            if pack_rows:
                gemm_packed_strided(m, k, &A[0, 0], 1 if transpose_a else k,
                                    m if transpose_a else 1, &Bp[0], groups, width,
                                    share(per, part, parts), share(per, part + 1, parts), add,
                                    &C[0, 0], n, &b[0] if b is not None else NULL, EDGE_ROWS)
            else:
                gemm_packed_tiles(m, k, &A[0, 0], 1 if transpose_a else k,
                                  m if transpose_a else 1, &Bp[0], groups, width,
                                  share(per, part, parts), share(per, part + 1, parts), add,
                                  &C[0, 0], n, &b[0] if b is not None else NULL, EDGE_ROWS,
                                  NULL)


def pack(const floating[:, ::1] B, Py_ssize_t groups, bint transposed):
    """B packed in strips by pack_strips, as gemm_packed reads it: B (k, n), its n columns
    in ``groups`` groups of equal width; with ``transposed``, the argument is B.T (n, k),
    read as W.T is (rows of B.T contiguous), else B itself."""
    cdef Py_ssize_t k = B.shape[1] if transposed else B.shape[0]
    cdef Py_ssize_t n = B.shape[0] if transposed else B.shape[1]
    if groups < 1 or n % groups or k < 1:
        raise ValueError(f"pack: B {(B.shape[0], B.shape[1])} and groups {groups} do not fit")
    cdef Py_ssize_t width = n // groups, per = strips(width)
    out = np.full(groups * per * k * TILE_COLS, np.nan,
                  np.float32 if floating is float else np.float64)
    cdef floating[::1] Bp = out
    with nogil:
        if transposed:
            pack_strips(k, groups, width, &B[0, 0], 1, k, 0, per, &Bp[0])
        else:
            pack_strips(k, groups, width, &B[0, 0], n, 1, 0, per, &Bp[0])
    return out


def row_split(Py_ssize_t m, int parts):
    """The boundaries of ``parts`` parts of m rows for a team of rows (row_share)."""
    if m < 0 or parts < 1:
        raise ValueError(f"row_split: m must be >= 0 and parts >= 1; got {m}, {parts}")
    return [row_share(m, part, parts) for part in range(parts + 1)]
