"""Data: batches read from a data set on disk (Caffe's DataLayer).

    data_param { source batch_size rand_skip backend shuffle shuffle_seed }
    transform_param { scale mean_file | mean_value crop_size mirror }

Tops: data (N x C x H x W, the blob's dtype: float32 in nets; H = W =
crop_size when cropping) and optionally label (N,). N = batch_size.

Backends (dualnet/data/): IDX file pairs (source "<dir>/train"), NPZ, LMDB of
Datum records; left unset, the backend is detected from the path. A
relative source is looked up from the current directory, then from the
prototxt's folder.

Order: records 0..R-1 in turn, wrapping around (a batch may span the wrap),
as Caffe's cursor; `rand_skip: s` first skips a random number of records in
0..s-1. `shuffle: true` visits each epoch in a fresh permutation drawn from a
generator seeded with shuffle_seed, or, when unset, from dualnet.random.rng()
(the solver's random_seed). Each batch is one gather from the decoded data
plus one vectorised transform (dualnet/data/transform.py).

`layer.last_indices` (int64, N) holds the record index of each sample of the
last batch, so that the dual-net trainer can key per-sample state by it.
`get_state()` / `set_state()` carry the cursor through a snapshot (exact
resume); `num_records`, a settable `batch_size` and `rewind()` let
`dualnet test --epoch` score every record exactly once. No backward.
"""
import numpy as np

from ..data.order import EpochOrder
from ..data.sources import open_source
from ..data.transform import DataTransformer
from ..errors import DataError, LayerError
from ..layer import Layer, register
from ..log import get_logger
from ..random import rng

log = get_logger("dualnet.data")


@register("Data")
class Data(Layer):
    exact_num_bottom = 0
    min_top = 1
    max_top = 2

    def setup(self, bottom, top):
        p = self.param.data_param
        if not p.batch_size:
            raise LayerError("data_param needs batch_size (the number of samples per batch), e.g. batch_size: 64")
        self.batch_size = p.batch_size
        try:
            self.source = open_source(p, self.source_dir)
        except DataError as error:
            raise LayerError(str(error), field="data_param.source") from error
        try:
            self.transformer = DataTransformer(self.param.transform_param, self.phase, self.source_dir)
        except DataError as error:
            raise LayerError(str(error)) from error
        if not self.source.num_records:
            raise LayerError(f"data source {self.source.description} holds no records")
        shape = self.transformer.output_shape(self.source.datum_shape)
        shuffle_rng = None
        if p.shuffle:
            seed = p.shuffle_seed if p.shuffle_seed >= 0 else int(rng().integers(2**63))
            shuffle_rng = np.random.default_rng(seed)
        self.order = EpochOrder(self.source.num_records, shuffle_rng)
        if p.rand_skip:
            skip = int(rng().integers(p.rand_skip))
            log.info("Skipping first %d data points.", skip)
            self.order.next(skip)
        self.last_indices = np.empty(0, dtype=np.int64)
        top[0].reshape((self.batch_size,) + shape)
        if len(top) > 1:
            top[1].reshape((self.batch_size,))
        log.info("%s: %d records; output data size: %s", self.source.description,
                 self.source.num_records, ",".join(map(str, top[0].shape)))

    def reshape(self, bottom, top):
        pass

    @property
    def num_records(self):
        return self.source.num_records

    def rewind(self):
        self.order.rewind()

    def get_state(self):
        return self.order.get_state()

    def share_cursor(self, other):
        """Draw batches from `other`'s cursor (several net instances reading one stream)."""
        self.order = other.order

    def set_state(self, state):
        self.order.set_state(state)

    def forward(self, bottom, top):
        indices = self.order.next(self.batch_size)
        try:
            pixels, labels = self.source.read(indices)
        except DataError as error:
            raise LayerError(str(error)) from error
        top[0].data = self.transformer(pixels, top[0].dtype)
        if len(top) > 1:
            top[1].data = labels.astype(top[1].dtype)
        self.last_indices = indices
