"""MemoryData: batches taken from arrays handed over from Python (pycaffe's API).

    memory_data_param { batch_size channels height width }   (all required)

Tops: data (N x C x H x W) and label (N,), N = batch_size.

    layer.set_input_arrays(data, labels)   data: R x C x H x W float32,
        C-contiguous; labels: R float32 (or R x 1 x 1 x 1); R a multiple of N
    layer.reset(data, labels, n=None)      the same, using the first n samples
    layer.add_arrays(data, labels)         Caffe's AddDatumVector/AddMatVector:
        raw images (R x C x H' x W', uint8 or float) go through transform_param
        first (crop to C x H x W, mirror, mean, scale), then are used as by reset

Each forward takes samples pos..pos+N-1 and advances pos by N, back to 0
after R. As in Caffe, arrays given to set_input_arrays/reset are used as they
are (not copied, not transformed: a warning says so when transform_param is
set). `layer.last_indices` holds the positions of the last batch. No backward.
"""
import numpy as np

from ..data.transform import DataTransformer
from ..errors import DataError, LayerError
from ..layer import Layer, register
from ..log import get_logger

log = get_logger("dualnet.data")


@register("MemoryData")
class MemoryData(Layer):
    exact_num_bottom = 0
    exact_num_top = 2

    def setup(self, bottom, top):
        p = self.param.memory_data_param
        self.batch_size, self.channels, self.height, self.width = p.batch_size, p.channels, p.height, p.width
        if not (self.batch_size and self.channels and self.height and self.width):
            raise LayerError("batch_size, channels, height, and width must be specified and positive in "
                             "memory_data_param")
        try:
            self.transformer = DataTransformer(self.param.transform_param, self.phase, self.source_dir)
        except DataError as error:
            raise LayerError(str(error)) from error
        self.data = self.labels = None
        self.n = self.pos = 0
        self.last_indices = np.empty(0, dtype=np.int64)
        top[0].reshape(self.batch_size, self.channels, self.height, self.width)
        top[1].reshape(self.batch_size)

    def _fail(self, reason):
        raise LayerError(f"MemoryData layer '{self.name}': {reason}")

    def set_input_arrays(self, data, labels):
        """pycaffe's Net.set_input_arrays for this layer."""
        for name, array in (("data", data), ("labels", labels)):
            if not isinstance(array, np.ndarray) or array.dtype != np.float32 or not array.flags.c_contiguous:
                self._fail(f"{name} must be a C-contiguous float32 array "
                           f"(use np.ascontiguousarray(x, dtype=np.float32))")
        self.reset(data, labels)

    def reset(self, data, labels, n=None):
        """Caffe's Reset: serve the first n samples (all by default), from position 0."""
        data, labels = np.asarray(data), np.asarray(labels)
        if labels.ndim == 4 and labels.shape[1:] == (1, 1, 1):
            labels = labels.reshape(-1)
        if labels.ndim != 1:
            self._fail(f"labels must have shape (N,) or (N, 1, 1, 1), got {labels.shape}")
        if data.ndim != 4 or data.shape[1:] != (self.channels, self.height, self.width):
            self._fail(f"data must be N x {self.channels} x {self.height} x {self.width} "
                       f"(memory_data_param), got {data.shape}")
        if len(data) != len(labels):
            self._fail(f"data has {len(data)} samples but labels has {len(labels)}")
        n = len(data) if n is None else int(n)
        if not 0 < n <= len(data):
            self._fail(f"n = {n} must be between 1 and the number of samples ({len(data)})")
        if n % self.batch_size:
            self._fail(f"the number of samples ({n}) must be a multiple of batch_size ({self.batch_size})")
        if self.param.HasField("transform_param"):
            log.warning("MemoryData layer '%s' does not transform array data on reset() or "
                        "set_input_arrays() (as in Caffe); use add_arrays() to apply transform_param",
                        self.name)
        self.data, self.labels, self.n, self.pos = data, labels, n, 0

    def add_arrays(self, data, labels):
        """Transform raw images with transform_param, then serve them (Caffe's AddMatVector)."""
        data = np.asarray(data)
        labels = np.asarray(labels, dtype=np.float32).reshape(-1)
        if data.ndim != 4 or data.shape[1] != self.channels:
            self._fail(f"data must be N x {self.channels} x H x W, got {data.shape}")
        if len(data) == 0 or len(data) % self.batch_size or len(labels) != len(data):
            self._fail(f"add_arrays needs a non-zero multiple of batch_size ({self.batch_size}) samples "
                       f"and one label each, got {len(data)} samples and {len(labels)} labels")
        try:
            shape = self.transformer.output_shape(data.shape[1:])
        except LayerError as error:
            self._fail(str(error))
        if shape != (self.channels, self.height, self.width):
            self._fail(f"transformed images are {'x'.join(map(str, shape))}, memory_data_param says "
                       f"{self.channels}x{self.height}x{self.width}")
        self.data, self.labels = self.transformer(data, np.float32), labels
        self.n, self.pos = len(data), 0

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        if self.data is None:
            raise LayerError("MemoryData needs data before forward: call set_input_arrays(data, labels) "
                             "(or reset / add_arrays) on the layer first")
        batch = slice(self.pos, self.pos + self.batch_size)
        top[0].data = np.asarray(self.data[batch], dtype=top[0].dtype)
        top[1].data = np.asarray(self.labels[batch], dtype=top[1].dtype)
        self.last_indices = np.arange(batch.start, batch.stop, dtype=np.int64)
        self.pos = (self.pos + self.batch_size) % self.n
