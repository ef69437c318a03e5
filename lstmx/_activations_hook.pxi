# Test hook: the cell's sigmoid and tanh, callable from Python for tests of their accuracy.
#
# Included by _test_hooks.pxi (the float kernels: _activations.pxd's functions) and by
# _quantized.pyx (_activations_rational.pxd's), each with the functions it cimports.

def activations(const floating[::1] x, floating[::1] sig, floating[::1] th):
    """sig = sigmoid(x), th = tanh(x) with the kernels' own functions."""
    if sig.shape[0] != x.shape[0] or th.shape[0] != x.shape[0]:
        raise ValueError(f"activations: x, sig and th must have one length; got "
                         f"{x.shape[0]}, {sig.shape[0]}, {th.shape[0]}")
    cdef Py_ssize_t k
    with nogil:
        for k in range(x.shape[0]):
            sig[k] = sigmoid(x[k])
            th[k] = tanh_(x[k])
