"""im2col / col2im: a convolution over a whole batch as one matrix product.

Shapes: x is (N, C, *S) with S the spatial sizes (H, W in 2-D; any number of
spatial axes works); the kernel K, pad P, stride St and dilation D are given
once or once per spatial axis. Along each spatial axis (Caffe's floor rule)

    O = (S + 2P - E) // St + 1,    E = D (K - 1) + 1  (the dilated kernel extent)

The columns matrix has one row per output position and one column per
kernel tap; for 2-D, with x_pad the zero-padded input,

    cols[(n, oh, ow), (kh, kw, c)] = x_pad[n, c, oh St + kh D, ow St + kw D]

of shape (N*OH*OW, KH*KW*C). With `channels_last=False` the columns are in
Caffe's order (c, kh, kw) instead, matching a weight blob (F, C, KH, KW) of F
filters flattened to (F, C*KH*KW). Convolution is then one GEMM for the whole
batch, `cols @ kernel_matrix(w).T`, and col2im is its adjoint: it adds every
column entry back onto the input pixel it was read from (the gradient of
im2col).

conv_transpose(rows, w, ...) is col2im(rows @ kernel_matrix(w)) computed one
kernel offset at a time without building the columns: a convolution's input
gradient and a Deconvolution's forward pass.

Layout (speed only; results never depend on it): im2col returns a 2-D view
whose memory is either row-major or column-major, whichever lets its one
copy move the longer contiguous runs (kernel taps x channels, or output
positions); BLAS takes either orientation without a copy. col2im and
conv_transpose accumulate channels-last, one strided add of the whole batch
per kernel offset. No loops over samples or pixels anywhere.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided


def _per_axis(value, num_axes, name="value"):
    """`value` (an int or one int per spatial axis) as a tuple of num_axes ints."""
    values = (int(value),) * num_axes if np.ndim(value) == 0 else tuple(int(v) for v in value)
    if len(values) == 1 and num_axes != 1:
        values = values * num_axes
    if len(values) != num_axes:
        raise ValueError(f"{name} has {len(values)} values for {num_axes} spatial axes")
    return values


def conv_output_shape(spatial, kernel, pad=0, stride=1, dilation=1):
    """Output spatial sizes of a convolution (floor rule); ValueError if a kernel does not fit."""
    nd = len(spatial)
    kernel, pad = _per_axis(kernel, nd, "kernel"), _per_axis(pad, nd, "pad")
    stride, dilation = _per_axis(stride, nd, "stride"), _per_axis(dilation, nd, "dilation")
    out = []
    for s, k, p, st, d in zip(spatial, kernel, pad, stride, dilation):
        extent = d * (k - 1) + 1
        if k < 1 or st < 1 or d < 1 or p < 0:
            raise ValueError(f"kernel {k}, stride {st} and dilation {d} must be positive and pad {p} >= 0")
        if s + 2 * p < extent:
            raise ValueError(f"kernel extent {extent} is larger than the padded input {s} + 2*{p}")
        out.append((s + 2 * p - extent) // st + 1)
    return tuple(out)


class _Geometry:
    """Per-axis kernel, pad, stride, dilation and the derived sizes for input (N, C, *S)."""

    def __init__(self, input_shape, kernel, pad, stride, dilation):
        self.N, self.C, *spatial = (int(d) for d in input_shape)
        self.spatial = tuple(spatial)
        nd = self.nd = len(spatial)
        self.kernel, self.pad = _per_axis(kernel, nd, "kernel"), _per_axis(pad, nd, "pad")
        self.stride, self.dilation = _per_axis(stride, nd, "stride"), _per_axis(dilation, nd, "dilation")
        self.out = conv_output_shape(self.spatial, self.kernel, self.pad, self.stride, self.dilation)
        # Padded length that every window fits in (and that holds the input).
        self.padded = tuple(
            max(s + p, (o - 1) * st + d * (k - 1) + 1)
            for s, p, o, st, d, k in zip(spatial, self.pad, self.out, self.stride, self.dilation, self.kernel)
        )

    def interior(self):
        """Slices of the padded spatial axes that hold the input."""
        return tuple(slice(p, p + s) for p, s in zip(self.pad, self.spatial))

    def tap(self, offset):
        """Slices of the padded spatial axes read by kernel tap `offset` at every output position."""
        return tuple(
            slice(k * d, k * d + (o - 1) * st + 1, st)
            for k, d, o, st in zip(offset, self.dilation, self.out, self.stride)
        )


def _copy_rows_major(g, channels_last):
    """Whether im2col's copy moves longer contiguous runs in row-major memory order.

    Row-major runs along the last kernel axis (times the channels when they
    come last, from a channels-last copy of x); column-major runs along the
    last output axis. Dilation or stride above 1 breaks the respective run.
    """
    if g.nd == 0:
        return True
    kernel_run = g.kernel[-1] if g.dilation[-1] == 1 else 1
    row_run = g.C * kernel_run if channels_last else kernel_run
    column_run = g.out[-1] if g.stride[-1] == 1 else 1
    return row_run >= column_run


def im2col(x, kernel, pad=0, stride=1, dilation=1, channels_last=True):
    """Columns of x (N, C, *S): a 2-D array (N*prod(O), prod(K)*C), see the module docstring."""
    g = _Geometry(x.shape, kernel, pad, stride, dilation)
    nd, N, C = g.nd, g.N, g.C
    taps = int(np.prod(g.kernel))
    rows = N * int(np.prod(g.out))
    rows_major = _copy_rows_major(g, channels_last)
    if rows_major and channels_last:
        # A channels-last padded copy, in which (kernel column, channel) is contiguous.
        xp = np.zeros((N,) + g.padded + (C,), dtype=x.dtype)
        xp[(slice(None),) + g.interior()] = np.moveaxis(x, 1, -1)
        s_n, *s_sp, s_c = xp.strides
    else:
        xp = x
        if g.padded != g.spatial:
            xp = np.zeros((N, C) + g.padded, dtype=x.dtype)
            xp[(slice(None), slice(None)) + g.interior()] = x
        s_n, s_c, *s_sp = xp.strides
    out_strides = tuple(s * st for s, st in zip(s_sp, g.stride))
    tap_strides = tuple(s * d for s, d in zip(s_sp, g.dilation))
    # Logical view (N, *O, *K, C) or (N, *O, C, *K).
    if channels_last:
        shape = (N,) + g.out + g.kernel + (C,)
        strides = (s_n,) + out_strides + tap_strides + (s_c,)
    else:
        shape = (N,) + g.out + (C,) + g.kernel
        strides = (s_n,) + out_strides + (s_c,) + tap_strides
    view = as_strided(xp, shape, strides, writeable=False)
    if rows_major:
        cols = np.empty(shape, dtype=x.dtype)
        np.copyto(cols, view)
        return cols.reshape(rows, taps * C)
    # Column-major: the tap axes first, then (N, *O).
    order = tuple(range(1 + nd, len(shape))) + tuple(range(1 + nd))
    cols = np.empty(tuple(shape[i] for i in order), dtype=x.dtype)
    np.copyto(cols, view.transpose(order))
    return cols.reshape(taps * C, rows).T


def _accumulate(blocks, g, dtype, out=None):
    """Sum (offset, block) pairs, block (N, *O, C), onto the padded input; returns (N, C, *S),
    written into `out` when given.

    Channels-last accumulation: with stride 1 every add moves runs of OW*C
    contiguous values.
    """
    acc = np.zeros((g.N,) + g.padded + (g.C,), dtype=dtype)
    for offset, block in blocks:
        acc[(slice(None),) + g.tap(offset)] += block
    interior = np.moveaxis(acc[(slice(None),) + g.interior()], -1, 1)
    if out is None:
        return np.ascontiguousarray(interior)
    np.copyto(out, interior)
    return out


def col2im(columns, input_shape, kernel, pad=0, stride=1, dilation=1, channels_last=True):
    """The adjoint of im2col: sum columns (N*prod(O), prod(K)*C) back into an array of input_shape."""
    g = _Geometry(input_shape, kernel, pad, stride, dilation)
    nd = g.nd
    if channels_last:
        taps = columns.reshape((g.N,) + g.out + g.kernel + (g.C,))
    else:
        taps = np.moveaxis(columns.reshape((g.N,) + g.out + (g.C,) + g.kernel), 1 + nd, -1)
    index = (slice(None),) * (1 + nd)
    blocks = ((offset, taps[index + offset]) for offset in np.ndindex(*g.kernel))
    return _accumulate(blocks, g, columns.dtype)


def conv_transpose(rows, weights, input_shape, pad=0, stride=1, dilation=1, out=None):
    """col2im(rows @ kernel_matrix(weights)) without building the columns.

    rows: (N*prod(O), F), one row of F filter responses per output position
    (e.g. a convolution's output gradient); weights: (F, C, *K); returns an
    array of input_shape (N, C, *S), or writes it into `out` (any array of that
    shape, e.g. a view of a larger one). This is a convolution's input gradient
    and a Deconvolution's forward pass: one small GEMM per kernel offset,
    whose (N*prod(O), C) result is added into the input while still in cache.
    """
    F, C, *kernel = weights.shape
    g = _Geometry(input_shape, kernel, pad, stride, dilation)
    if g.C != C or rows.shape != (g.N * int(np.prod(g.out)), F):
        raise ValueError(f"rows {rows.shape} and weights {weights.shape} do not fit input {tuple(input_shape)}")
    stack = kernel_stack(weights)
    dtype = np.result_type(rows, weights)
    product = np.empty((rows.shape[0], C), dtype=dtype)

    def blocks():
        for k, offset in enumerate(np.ndindex(*g.kernel)):
            np.matmul(rows, stack[k], out=product)
            yield offset, product.reshape((g.N,) + g.out + (C,))

    return _accumulate(blocks(), g, dtype, out)


def kernel_matrix(w, channels_last=True):
    """Weights (F, C, *K) as the (F, prod(K)*C) matrix that multiplies im2col's columns."""
    if channels_last:
        w = np.moveaxis(w, 1, -1)
    return np.ascontiguousarray(w).reshape(w.shape[0], -1)


def kernel_from_matrix(matrix, weight_shape, channels_last=True):
    """The inverse of kernel_matrix: (F, prod(K)*C) back to weights (F, C, *K)."""
    F, C, *K = weight_shape
    if not channels_last:
        return matrix.reshape(weight_shape)
    return np.moveaxis(matrix.reshape([F] + K + [C]), -1, 1)


def kernel_stack(w):
    """Weights (F, C, *K) as (prod(K), F, C): one contiguous (F, C) matrix per kernel offset."""
    F, C = w.shape[:2]
    return np.ascontiguousarray(w.reshape(F, C, -1).transpose(2, 0, 1))
