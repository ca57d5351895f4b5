import itertools

import numpy as np
import pytest

from dualnet.im2col import col2im, conv_output_shape, conv_transpose, im2col, kernel_from_matrix, kernel_matrix

rng = np.random.default_rng(7)


def reference_columns(x, kernel, pad, stride, dilation, channels_last=True):
    """Loop-based im2col over any number of spatial axes: one row per output position."""
    N, C, *S = x.shape
    nd = len(S)
    out = [(s + 2 * p - (d * (k - 1) + 1)) // st + 1 for s, k, p, st, d in zip(S, kernel, pad, stride, dilation)]
    rows = []
    for n in range(N):
        for position in itertools.product(*[range(o) for o in out]):
            row = {}
            for c in range(C):
                for offset in itertools.product(*[range(k) for k in kernel]):
                    index = [position[a] * stride[a] - pad[a] + offset[a] * dilation[a] for a in range(nd)]
                    inside = all(0 <= index[a] < S[a] for a in range(nd))
                    row[(offset, c)] = x[(n, c) + tuple(index)] if inside else 0.0
            order = sorted(row, key=(lambda t: (t[0], t[1])) if channels_last else (lambda t: (t[1], t[0])))
            rows.append([row[t] for t in order])
    return np.array(rows)


def test_output_shape_is_the_floor_rule_with_dilation():
    # extent = 2*(3-1)+1 = 5: (7 + 2 - 5) // 2 + 1 = 3;  (8 + 0 - 2) // 3 + 1 = 3
    assert conv_output_shape((7, 8), (3, 2), (1, 0), (2, 3), (2, 1)) == (3, 3)


def test_output_shape_refuses_a_kernel_larger_than_the_padded_input():
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv_output_shape((3,), 3, 0, 1, 2)


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("shape,kernel,pad,stride,dilation", [
    ((2, 3, 7, 6), (3, 2), (1, 0), (2, 1), (1, 2)),
    ((2, 4, 9, 8), (3, 3), (1, 2), (3, 2), (2, 1)),
    ((1, 1, 10, 11), (2, 3), (0, 1), (1, 1), (1, 1)),
])
def test_im2col_matches_the_loop_reference(shape, kernel, pad, stride, dilation, channels_last):
    x = rng.standard_normal(shape)
    cols = im2col(x, kernel, pad, stride, dilation, channels_last=channels_last)
    np.testing.assert_array_equal(cols, reference_columns(x, kernel, pad, stride, dilation, channels_last))


@pytest.mark.parametrize("shape,layout", [((2, 1, 12, 12), "F_CONTIGUOUS"), ((2, 8, 6, 6), "C_CONTIGUOUS")])
def test_both_memory_orders_give_the_same_columns(shape, layout):
    # One input channel and wide rows: column-major is the cheaper copy; many channels: row-major.
    x = rng.standard_normal(shape)
    cols = im2col(x, 3, 1, 1, 1)
    assert cols.flags[layout]
    np.testing.assert_array_equal(cols, reference_columns(x, (3, 3), (1, 1), (1, 1), (1, 1)))


@pytest.mark.parametrize("shape,kernel,pad,stride,dilation", [
    ((2, 3, 9), (3,), (1,), (2,), (2,)),
    ((1, 2, 4, 5, 3), (2, 3, 1), (1, 0, 1), (1, 2, 1), (1, 1, 2)),
])
def test_im2col_works_for_1d_and_3d(shape, kernel, pad, stride, dilation):
    x = rng.standard_normal(shape)
    np.testing.assert_array_equal(im2col(x, kernel, pad, stride, dilation),
                                  reference_columns(x, kernel, pad, stride, dilation))


def test_col2im_of_ones_counts_the_windows_covering_each_pixel():
    # 1-D, input 5, kernel 3, stride 1: pixel i lies in [1, 2, 3, 2, 1] windows.
    cols = np.ones((3, 3))
    np.testing.assert_array_equal(col2im(cols, (1, 1, 5), 3), [[[1, 2, 3, 2, 1]]])
    # kernel 2, stride 2, pad 1: windows cover [-1, 0], [1, 2], [3, 4]: each pixel once.
    np.testing.assert_array_equal(col2im(np.ones((3, 2)), (1, 1, 5), 2, 1, 2), [[[1, 1, 1, 1, 1]]])


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("shape,kernel,pad,stride,dilation", [
    ((2, 3, 7, 6), (3, 2), (1, 0), (2, 1), (1, 2)),
    ((2, 1, 12, 12), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((2, 5, 8, 7), (2, 3), (1, 2), (3, 2), (2, 1)),
    ((2, 3, 9), (3,), (1,), (2,), (2,)),
])
def test_col2im_is_the_adjoint_of_im2col(shape, kernel, pad, stride, dilation, channels_last):
    x = rng.standard_normal(shape)
    cols = im2col(x, kernel, pad, stride, dilation, channels_last=channels_last)
    z = rng.standard_normal(cols.shape)
    for layout in (z, np.asfortranarray(z)):
        back = col2im(layout, shape, kernel, pad, stride, dilation, channels_last=channels_last)
        assert back.shape == shape
        np.testing.assert_allclose(np.vdot(cols, layout), np.vdot(x, back), rtol=1e-12)


@pytest.mark.parametrize("channels_last", [True, False])
def test_columns_times_kernel_matrix_is_the_direct_convolution(channels_last):
    x = rng.standard_normal((2, 3, 6, 5))
    w = rng.standard_normal((4, 3, 3, 2))
    y = im2col(x, (3, 2), (1, 1), (2, 1), 1, channels_last) @ kernel_matrix(w, channels_last).T
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.zeros((2, 3, 6, 4))  # rows (n, oh, ow), output channel last
    for n, oh, ow, o in itertools.product(range(2), range(3), range(6), range(4)):
        expected[n, oh, ow, o] = (xp[n, :, 2 * oh:2 * oh + 3, ow:ow + 2] * w[o]).sum()
    np.testing.assert_allclose(y.reshape(2, 3, 6, 4), expected, rtol=1e-12)


@pytest.mark.parametrize("channels_last", [True, False])
def test_kernel_from_matrix_inverts_kernel_matrix(channels_last):
    w = rng.standard_normal((4, 3, 2, 5))
    np.testing.assert_array_equal(kernel_from_matrix(kernel_matrix(w, channels_last), w.shape, channels_last), w)


@pytest.mark.parametrize("shape,pad,stride,dilation", [
    ((2, 3, 7, 6), (1, 0), (2, 1), (1, 2)),
    ((2, 3, 5), (2,), (1,), (1,)),
])
def test_conv_transpose_is_col2im_of_rows_times_kernel_matrix(shape, pad, stride, dilation):
    w = rng.standard_normal((4, shape[1]) + (3, 2)[: len(shape) - 2])
    out = conv_output_shape(shape[2:], w.shape[2:], pad, stride, dilation)
    rows = rng.standard_normal((shape[0] * int(np.prod(out)), 4))
    expected = col2im(rows @ kernel_matrix(w), shape, w.shape[2:], pad, stride, dilation)
    np.testing.assert_allclose(conv_transpose(rows, w, shape, pad, stride, dilation), expected, rtol=1e-12)


def test_conv_transpose_refuses_rows_of_the_wrong_size():
    with pytest.raises(ValueError, match="do not fit"):
        conv_transpose(np.ones((5, 4)), np.ones((4, 2, 3, 3)), (1, 2, 4, 4))


def test_work_stays_in_the_input_dtype():
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    cols = im2col(x, 3, 1)
    assert cols.dtype == np.float32
    assert col2im(cols, x.shape, 3, 1).dtype == np.float32
    rows = np.ones((2 * 25, 4), np.float32)
    assert conv_transpose(rows, np.ones((4, 3, 3, 3), np.float32), x.shape, 1).dtype == np.float32
