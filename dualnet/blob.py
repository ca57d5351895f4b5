"""Blob: a named N-d array with its gradient, as in Caffe.

`data` and `diff` are NumPy arrays of the same shape (float32 in nets,
float64 in gradient checks). Layers may write into them in place or assign a
new array of the blob's shape; `reshape` reallocates only when the shape
changes. A layer that computes a whole new top (or bottom diff) asks for
`output_data()` (`output_diff()`): the blob's current array when it can take
the result, as Caffe's layers write their tops in place, so a large blob is
not held twice while its next value is computed. Like Caffe's, an array read
from a blob is overwritten by the next pass; copy what must outlive it.
"""
import numpy as np


class Blob:
    __slots__ = ("data", "diff")

    def __init__(self, shape=(), dtype=np.float32):
        shape = tuple(int(d) for d in shape)
        self.data = np.zeros(shape, dtype=dtype)
        self.diff = np.zeros(shape, dtype=dtype)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def count(self):
        return self.data.size

    @property
    def num_axes(self):
        return self.data.ndim

    def reshape(self, *shape):
        """Give the blob a new shape; contents are kept only if it is unchanged."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        shape = tuple(int(d) for d in shape)
        if any(d < 0 for d in shape):
            raise ValueError(f"negative blob dimension in {shape}")
        if shape != self.data.shape:
            self.data = np.zeros(shape, dtype=self.data.dtype)
            self.diff = np.zeros(shape, dtype=self.diff.dtype)

    def output_data(self, *reads):
        """The array to compute this blob's next data into from the arrays `reads`, in their
        dtype (see the module docstring)."""
        if not _can_take(self.data, self.data.shape, reads):
            self.data = np.empty(self.data.shape, dtype=_result_type(self.data, reads))
        return self.data

    def output_diff(self, *reads):
        """The array to compute this blob's next diff into from the arrays `reads`, in their
        dtype (see the module docstring)."""
        if not _can_take(self.diff, self.data.shape, reads):
            self.diff = np.empty(self.data.shape, dtype=_result_type(self.diff, reads))
        return self.diff

    def reshape_like(self, other):
        self.reshape(other.shape)

    def astype(self, dtype):
        """Convert data and diff in place to `dtype` (used by gradient checks)."""
        self.data = self.data.astype(dtype)
        self.diff = self.diff.astype(dtype)

    # Caffe's legacy 4-D accessors.
    def _legacy(self, index):
        # Caffe's LegacyShape: axes past the blob's last one count as 1.
        if self.data.ndim > 4:
            raise ValueError("legacy accessors need a blob of at most 4 axes")
        return self.data.shape[index] if index < self.data.ndim else 1

    @property
    def num(self):
        return self._legacy(0)

    @property
    def channels(self):
        return self._legacy(1)

    @property
    def height(self):
        return self._legacy(2)

    @property
    def width(self):
        return self._legacy(3)

    def __repr__(self):
        return f"Blob(shape={self.shape}, dtype={self.dtype})"


def _result_type(array, reads):
    return np.result_type(*reads) if reads else array.dtype


def _can_take(array, shape, reads):
    """Whether a layer may overwrite `array` with a result of `shape` computed from `reads`: it
    has that shape and their dtype, is C-contiguous and writeable, and shares no memory with them."""
    return (array.shape == shape and array.dtype == _result_type(array, reads)
            and array.flags.c_contiguous and array.flags.writeable
            and not any(np.may_share_memory(array, other) for other in reads))
