"""Pooling: Caffe's PoolingLayer, MAX or AVE over (N, C, H, W) windows.

Output size (per axis; round_mode CEIL by default, FLOOR on request):
    OH = ceil((H + 2 pad_h - KH) / stride_h) + 1
and when any pad is nonzero, a last window that would start at or beyond
H + pad_h is dropped (OH -= 1). Window (i, j) covers rows
hstart = i stride_h - pad_h .. hstart + KH, clipped to the image.
    MAX: y = max over the clipped window; dx gets dy at the first maximum in
         row-major scan order (ties: the earliest). A second top holds that
         argmax as the float index h W + w within its channel (-1 for a
         window with no pixel), as Caffe's top mask.
    AVE: y = sum over the clipped window / pool_size, where pool_size counts
         padding: (min(hstart + KH, H + pad_h) - hstart) * (same for w);
         dx[pixel] = sum over the windows holding it of dy / pool_size.
global_pooling pools the whole H x W plane (pad 0, stride 1). STOCHASTIC is
not supported (Caffe has no CPU implementation of it either).
Each window sum or max is a loop over the KH*KW kernel offsets, one strided
view of the whole batch per offset.
"""
import numpy as np

from .. import dualnet_pb2 as pb
from ..errors import LayerError
from ..layer import Layer, register

P = pb.PoolingParameter


def pooled_size(size, kernel, pad, stride, ceil_mode, any_pad):
    """Caffe's pooled length of one axis (ceil or floor, then the padding correction)."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if any_pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _pair(p, name, h, w):
    """A square value `name` or its `h`/`w` pair, given one way only."""
    if p.HasField(h) or p.HasField(w):
        if p.HasField(name):
            raise LayerError(f"give either {name} or {h} and {w}, not both")
        if not (p.HasField(h) and p.HasField(w)):
            raise LayerError(f"{h} and {w} must be given together")
        return getattr(p, h), getattr(p, w)
    return getattr(p, name), getattr(p, name)


@register("Pooling")
class Pooling(Layer):
    owns_tops = True
    exact_num_bottom = 1
    min_top = 1
    max_top = 2

    def setup(self, bottom, top):
        p = self.param.pooling_param
        self.method, self.global_pooling = p.pool, p.global_pooling
        if self.method == P.STOCHASTIC:
            raise LayerError("STOCHASTIC pooling is not supported (Caffe has it on GPU only); use MAX or AVE")
        if len(top) > 1 and self.method != P.MAX:
            raise LayerError("only MAX pooling has a second top (the argmax mask)")
        given_kernel = p.HasField("kernel_size") or p.HasField("kernel_h") or p.HasField("kernel_w")
        if self.global_pooling:
            if given_kernel:
                raise LayerError("with global_pooling the kernel is the whole input; remove kernel_size")
            self.kernel = None  # the input's H x W, set at reshape
        else:
            if not given_kernel:
                raise LayerError("pooling_param needs kernel_size (or kernel_h and kernel_w)")
            self.kernel = _pair(p, "kernel_size", "kernel_h", "kernel_w")
            if min(self.kernel) == 0:
                raise LayerError(f"kernel sizes must be nonzero, got {self.kernel}")
        self.pad = _pair(p, "pad", "pad_h", "pad_w")
        self.stride = _pair(p, "stride", "stride_h", "stride_w")
        if min(self.stride) == 0:
            raise LayerError(f"strides must be nonzero, got {self.stride}")
        if self.global_pooling and (any(self.pad) or self.stride != (1, 1)):
            raise LayerError("global_pooling takes pad 0 and stride 1 only")
        if self.kernel and any(p_ >= k for p_, k in zip(self.pad, self.kernel)):
            raise LayerError(f"pad {self.pad} must be smaller than the kernel {self.kernel}")
        self.ceil_mode = p.round_mode == P.CEIL

    def reshape(self, bottom, top):
        if bottom[0].num_axes != 4:
            raise LayerError(f"Pooling needs a 4-axis bottom (N, C, H, W), got shape {bottom[0].shape}")
        N, C, H, W = bottom[0].shape
        if self.global_pooling:
            self.kernel = (H, W)
        self.out = tuple(
            pooled_size(s, k, p_, st, self.ceil_mode, any(self.pad))
            for s, k, p_, st in zip((H, W), self.kernel, self.pad, self.stride)
        )
        if min(self.out) < 1:
            raise LayerError(f"the kernel {self.kernel} is larger than the padded input {(H, W)} (pad {self.pad})")
        for blob in top:
            blob.reshape(N, C, *self.out)

    # ---- window geometry ---------------------------------------------------
    def _padded_shape(self, H, W):
        """(Hp, Wp): the padded plane that holds the input and every window."""
        return tuple(max(s + p_, (o - 1) * st + k)
                     for s, p_, st, k, o in zip((H, W), self.pad, self.stride, self.kernel, self.out))

    def _padded(self, x, fill):
        """x inside a (N, C, Hp, Wp) buffer of `fill` (x itself when no padding is needed)."""
        H, W = x.shape[2:]
        Hp, Wp = self._padded_shape(H, W)
        if (Hp, Wp) == (H, W):
            return x
        ph, pw = self.pad
        xp = np.full(x.shape[:2] + (Hp, Wp), fill, dtype=x.dtype)
        xp[:, :, ph:ph + H, pw:pw + W] = x
        return xp

    def _offsets(self):
        """(k, view slices) for every kernel offset in row-major scan order."""
        (sh, sw), (kh, kw), (oh, ow) = self.stride, self.kernel, self.out
        for k, (i, j) in enumerate(np.ndindex(kh, kw)):
            rows, cols = slice(i, i + (oh - 1) * sh + 1, sh), slice(j, j + (ow - 1) * sw + 1, sw)
            yield k, (slice(None), slice(None), rows, cols)

    def _pool_size(self, H, W):
        """Caffe's AVE divisor per output position, (OH, OW); at least 1 for an empty window."""
        sizes = []
        for s, p_, st, k, o in zip((H, W), self.pad, self.stride, self.kernel, self.out):
            start = np.arange(o) * st - p_
            sizes.append(np.maximum(np.minimum(start + k, s + p_) - start, 1))
        return np.outer(*sizes)

    # ---- forward / backward ------------------------------------------------
    def forward(self, bottom, top):
        x = bottom[0].data
        N, C, H, W = x.shape
        if self.method == P.AVE:
            if self.global_pooling:
                y = x.mean(axis=(2, 3), keepdims=True)
            else:
                xp = self._padded(x, 0)
                y = top[0].output_data(x)
                y[...] = 0
                for _, view in self._offsets():
                    y += xp[view]
                y /= self._pool_size(H, W).astype(x.dtype)
            if self.global_pooling:
                top[0].data = y
            return
        if self.global_pooling:
            arg = x.reshape(N, C, H * W).argmax(axis=2).reshape(N, C, 1, 1)
            y = np.take_along_axis(x.reshape(N, C, H * W), arg.reshape(N, C, 1), axis=2).reshape(N, C, 1, 1)
        else:
            # Padding never wins; an empty window gives Caffe's -FLT_MAX.
            xp = self._padded(x, np.finfo(x.dtype).min)
            index_type = np.min_scalar_type(int(np.prod(self.kernel)))
            arg = np.zeros((N, C) + self.out, dtype=index_type)
            taken = np.empty_like(arg)
            y = top[0].output_data(x)
            for k, view in self._offsets():
                v = xp[view]
                if k == 0:
                    np.copyto(y, v)
                    continue
                better = v > y
                np.maximum(y, v, out=y)
                # Offsets come in increasing k, so "arg = k where better" is a max.
                np.multiply(better, index_type.type(k), out=taken)
                np.maximum(arg, taken, out=arg)
        self.cache["arg"] = arg
        if self.global_pooling:
            top[0].data = y
        if len(top) > 1:
            top[1].data = self._mask(arg, H, W).astype(x.dtype)

    def _mask(self, arg, H, W):
        """The argmax as h W + w in the input plane, -1 where it fell in padding."""
        if self.global_pooling:
            return arg
        kw = self.kernel[1]
        rows = np.arange(self.out[0])[:, None] * self.stride[0] - self.pad[0] + arg // kw
        cols = np.arange(self.out[1])[None, :] * self.stride[1] - self.pad[1] + arg % kw
        inside = (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)
        return np.where(inside, rows * W + cols, -1)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].diff
        N, C, H, W = bottom[0].shape
        if self.global_pooling:
            if self.method == P.AVE:
                dx = np.broadcast_to(dy / (H * W), (N, C, H, W)).copy()
            else:
                dx = np.zeros((N, C, H * W), dtype=dy.dtype)
                np.put_along_axis(dx, self.cache.pop("arg").reshape(N, C, 1), dy.reshape(N, C, 1), axis=2)
            bottom[0].diff = dx.reshape(N, C, H, W)
            return
        Hp, Wp = self._padded_shape(H, W)
        # Windows that never overlap (stride >= kernel) can assign instead of add, and
        # when they also tile the plane exactly, every pixel is assigned once.
        disjoint = all(s >= k for s, k in zip(self.stride, self.kernel))
        tiles = tuple(o * k for o, k in zip(self.out, self.kernel))
        tiled = self.method == P.MAX and self.stride == self.kernel and (H, W) == (Hp, Wp) == tiles
        if (Hp, Wp) == (H, W):
            dxp = bottom[0].output_diff(dy)
        else:
            dxp = np.empty((N, C, Hp, Wp), dtype=dy.dtype)
        if not tiled:
            dxp[...] = 0
        if self.method == P.AVE:
            share = dy / self._pool_size(H, W).astype(dy.dtype)
            for _, view in self._offsets():
                dxp[view] += share
        else:
            arg = self.cache.pop("arg")
            for k, view in self._offsets():
                if disjoint:
                    np.multiply(dy, arg == k, out=dxp[view])
                else:
                    dxp[view] += dy * (arg == k)
        ph, pw = self.pad
        if (Hp, Wp) != (H, W):
            bottom[0].diff = np.ascontiguousarray(dxp[:, :, ph:ph + H, pw:pw + W])
