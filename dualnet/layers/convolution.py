"""Convolution: Caffe's ConvolutionLayer (groups, dilation, any number of spatial axes).

    x: (N, C, H, W) -> y: (N, O, OH, OW);  W: (O, C/G, KH, KW);  b: (O,)
    OH = (H + 2 pad_h - E_h) // stride_h + 1,  E_h = dilation_h (KH - 1) + 1   (floor; same for W)
    y[n, o, i, j] = b[o] + sum_{c in group(o), kh, kw} W[o, c, kh, kw] x_pad[n, c, i s + kh d, j s + kw d]

Per group g, with cols = im2col(x_g) (N*P, K), P = OH*OW output positions,
K = KH*KW*C/G, and Wm the group's weights as a (O/G, K) matrix
(dualnet.im2col), the whole batch is one GEMM each way:
    y_g = cols Wm^T,   dWm += dy_g^T cols,   db += sum_{n,i,j} dy,   dx_g = col2im(dy_g Wm)
(the last computed by conv_transpose, one kernel offset at a time; y_g's rows
(N*P, O/G) are then transposed to (N, O/G, P), a small copy). When K <= P
(few input channels, e.g. a first layer on gray images), y_g and dWm are
instead N per-sample GEMMs, y_g[n] = Wm cols_n^T and dWm += sum_n dy_g[n] cols_n,
which write (N, O/G, P) directly: one long GEMM with so short an inner
dimension runs slowly on OpenBLAS (LeNet's conv1, K = 25, P = 576: 2-3x
faster each way).

Memory: the columns are KH*KW times the input, so a large batch is taken in
chunks of samples whose columns fit COLUMN_BYTES (32 MiB); a batch that fits
in one chunk (LeNet's at 64) keeps its columns from forward to backward, a
larger one recomputes each chunk's columns for dW in backward from the bottom
data, as Caffe's own backward does (im2col is a copy; the GEMMs dominate),
and computes dx chunk by chunk into the bottom's diff. Without chunks cnn4
held 490 MB of columns at batch 1024, about half of its peak memory; without
dx chunks its conv2 backward held three copies of conv2's output gradient.

`axis` is the channel axis: the axes before it are batch axes (N is their
product), every axis after it is spatial, and kernel_size / pad / stride /
dilation are given once or once per spatial axis (or as kernel_h/kernel_w,
pad_h/pad_w, stride_h/stride_w in 2-D). Several bottoms are convolved with
the same weights into as many tops. Fillers default to constant 0, as in Caffe.
"""
import numpy as np

from ..errors import LayerError
from ..fillers import filler
from ..im2col import conv_output_shape, conv_transpose, im2col, kernel_from_matrix, kernel_matrix
from ..layer import Layer, canonical_axis, register


def _per_axis(p, name, num_spatial, default, h=None, w=None):
    """Repeated field `name` (once or once per spatial axis) or its 2-D pair `h`/`w`."""
    values = list(getattr(p, name))
    if h and (p.HasField(h) or p.HasField(w)):
        if num_spatial != 2:
            raise LayerError(f"{h} and {w} can only be used for 2-D convolution, "
                             f"the input has {num_spatial} spatial axes")
        if values:
            raise LayerError(f"give either {name} or {h} and {w}, not both")
        if not (p.HasField(h) and p.HasField(w)) and name != "pad":  # pad_h/pad_w default to 0
            raise LayerError(f"{h} and {w} must be given together")
        return (getattr(p, h), getattr(p, w))
    if not values:
        if default is None:
            raise LayerError(f"convolution_param needs {name}" + (f" (or {h} and {w})" if h else ""))
        return (default,) * num_spatial
    if len(values) not in (1, num_spatial):
        raise LayerError(f"{name} must be given once or once per spatial axis "
                         f"(given {len(values)} times for {num_spatial} spatial axes)")
    return tuple(values) * (num_spatial if len(values) == 1 else 1)


def conv_geometry(p, num_spatial):
    """(kernel, pad, stride, dilation) per spatial axis from a ConvolutionParameter."""
    kernel = _per_axis(p, "kernel_size", num_spatial, None, "kernel_h", "kernel_w")
    pad = _per_axis(p, "pad", num_spatial, 0, "pad_h", "pad_w")
    stride = _per_axis(p, "stride", num_spatial, 1, "stride_h", "stride_w")
    dilation = _per_axis(p, "dilation", num_spatial, 1)
    if any(k == 0 for k in kernel):
        raise LayerError(f"kernel sizes must be nonzero, got {kernel}")
    if any(s == 0 for s in stride):
        raise LayerError(f"strides must be nonzero, got {stride}")
    if any(d == 0 for d in dilation):
        raise LayerError(f"dilations must be nonzero, got {dilation}")
    return kernel, pad, stride, dilation


COLUMN_BYTES = 32 << 20


def per_sample_gemm(cols, P):
    """Whether to multiply the columns (N*P, K) one sample at a time: when K <= P (module docstring)."""
    return cols.shape[1] <= P


class ConvolutionBase(Layer):
    """What Convolution and Deconvolution share: parameters, groups, shape checks."""

    min_bottom = 1
    min_top = 1
    equal_num_bottom_top = True

    def setup(self, bottom, top):
        p = self.param.convolution_param
        self.axis = canonical_axis(p.axis, bottom[0].num_axes, "convolution_param.axis")
        self.num_spatial = bottom[0].num_axes - self.axis - 1
        self.kernel, self.pad, self.stride, self.dilation = conv_geometry(p, self.num_spatial)
        if p.num_output == 0:
            raise LayerError("convolution_param needs num_output > 0")
        self.num_output, self.group = p.num_output, p.group
        self.channels = bottom[0].shape[self.axis]
        if self.group == 0:
            raise LayerError("group must be at least 1")
        if self.channels % self.group:
            raise LayerError(f"the {self.channels} input channels cannot be split into "
                             f"group: {self.group} equal groups")
        if self.num_output % self.group:
            raise LayerError(f"num_output {self.num_output} must be a multiple of group: {self.group}")
        # Caffe's weight shape: (conv out channels, conv in channels / group, *kernel).
        conv_out, conv_in = (self.channels, self.num_output) if self.reverse else (self.num_output, self.channels)
        shape = (conv_out, conv_in // self.group) + self.kernel
        self.bias_term = p.bias_term
        self.blobs = [self.new_param_blob(shape, p.weight_filler, filler("constant"))]
        if self.bias_term:
            self.blobs.append(self.new_param_blob((self.num_output,), p.bias_filler, filler("constant")))

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        if len(shape) != self.axis + 1 + self.num_spatial:
            raise LayerError(f"the bottom must keep {self.axis + 1 + self.num_spatial} axes, got shape {shape}")
        if shape[self.axis] != self.channels:
            raise LayerError(f"the bottom has {shape[self.axis]} channels, the weights expect {self.channels}")
        for blob in bottom[1:]:
            if blob.shape != shape:
                raise LayerError(f"all bottoms must have the same shape, got {shape} and {blob.shape}")
        out = self.output_spatial(shape[self.axis + 1:])
        for blob in top:
            blob.reshape(shape[: self.axis] + (self.num_output,) + out)

    def groups(self, channels):
        """One channel slice per group."""
        size = channels // self.group
        return [slice(g * size, (g + 1) * size) for g in range(self.group)]

    def batch_shape(self, shape, channels):
        """`shape` as (N, channels, *spatial), N the product of the axes before the channel axis."""
        return (int(np.prod(shape[: self.axis])), channels) + tuple(shape[self.axis + 1:])

    def group_shape(self, shape):
        """A (N, C, *spatial) shape with the channels of one group."""
        return (shape[0], shape[1] // self.group) + tuple(shape[2:])


@register("Convolution")
class Convolution(ConvolutionBase):
    reverse = False
    owns_tops = True

    def output_spatial(self, spatial):
        try:
            return conv_output_shape(spatial, self.kernel, self.pad, self.stride, self.dilation)
        except ValueError as error:
            raise LayerError(f"{error}; use a smaller kernel or dilation, or more padding") from None

    def group_columns(self, x):
        """im2col of samples x (n, C, *spatial), one (n*P, K) matrix per group."""
        return [im2col(x[:, gi], self.kernel, self.pad, self.stride, self.dilation)
                for gi in self.groups(self.channels)]

    def samples_per_chunk(self, x, P):
        """Samples per chunk: as many as keep all groups' columns within COLUMN_BYTES (at least 1)."""
        per_sample = P * self.channels * int(np.prod(self.kernel)) * x.itemsize
        return max(1, min(x.shape[0], COLUMN_BYTES // per_sample))

    def forward(self, bottom, top):
        W = self.blobs[0].data
        for i, (b, t) in enumerate(zip(bottom, top)):
            x = b.data.reshape(self.batch_shape(b.shape, self.channels))
            N, P = x.shape[0], int(np.prod(t.shape[self.axis + 1:]))
            y = t.output_data(x, W).reshape(N, self.num_output, P)
            step = self.samples_per_chunk(x, P)
            for s in range(0, N, step):
                cols = self.group_columns(x[s:s + step])
                n = cols[0].shape[0] // P
                for go, c in zip(self.groups(self.num_output), cols):
                    if per_sample_gemm(c, P):
                        np.matmul(kernel_matrix(W[go]), c.reshape(n, P, -1).transpose(0, 2, 1),
                                  out=y[s:s + n, go])
                    else:
                        y[s:s + n, go] = (c @ kernel_matrix(W[go]).T).reshape(n, P, -1).transpose(0, 2, 1)
            if self.bias_term:
                y += self.blobs[1].data[:, None]
            self.cache[i] = cols if step >= N else None      # None: backward recomputes each chunk's

    def backward(self, top, propagate_down, bottom):
        W = self.blobs[0]
        for i, (t, b) in enumerate(zip(top, bottom)):
            cols = self.cache.pop(i)
            if not (propagate_down[i] or any(self.param_propagate_down)):
                continue
            x = b.data.reshape(self.batch_shape(b.shape, self.channels))
            N, P = x.shape[0], int(np.prod(t.shape[self.axis + 1:]))
            dy = t.diff.reshape(N, self.num_output, P)
            dx = b.output_diff(dy, W.data).reshape(x.shape) if propagate_down[i] else None
            step = N if cols is not None else self.samples_per_chunk(x, P)
            for s in range(0, N, step):
                n = min(step, N - s)
                # dy as rows (n*P, O) for the one-GEMM products: contiguous when dx needs it
                rows = (np.ascontiguousarray(dy[s:s + n].transpose(0, 2, 1)).reshape(-1, self.num_output)
                        if dx is not None else None)
                if self.param_propagate_down[0]:
                    self.add_weight_diff(dy[s:s + n], rows, cols or self.group_columns(x[s:s + n]), P)
                if dx is not None:
                    shape = self.group_shape((n,) + x.shape[1:])
                    for go, gi in zip(self.groups(self.num_output), self.groups(self.channels)):
                        conv_transpose(rows[:, go], W.data[go], shape, self.pad, self.stride, self.dilation,
                                       out=dx[s:s + n, gi])
            if self.bias_term and self.param_propagate_down[1]:
                self.blobs[1].diff += dy.sum(axis=0).sum(axis=1)

    def add_weight_diff(self, dy, dy_rows, cols, P):
        """dWm += dy_g^T cols for n samples: dy (n, O, P); dy_rows its (n*P, O) rows or None."""
        W = self.blobs[0]
        n = dy.shape[0]
        per_sample = [per_sample_gemm(c, P) for c in cols]
        if dy_rows is None and not all(per_sample):
            # a view of the cheaper (O, n*P) copy
            dy_rows = np.ascontiguousarray(dy.transpose(1, 0, 2)).reshape(self.num_output, -1).T
        for go, c, each in zip(self.groups(self.num_output), cols, per_sample):
            if each:
                dWm = np.matmul(dy[:, go], c.reshape(n, P, -1)).sum(axis=0)
            else:
                dWm = dy_rows[:, go].T @ c
            W.diff[go] += kernel_from_matrix(dWm, W.diff[go].shape)
