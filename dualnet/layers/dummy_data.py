"""DummyData: tops filled by fillers, for tests and timing (Caffe's DummyDataLayer).

    dummy_data_param {
      shape { dim ... }                      1 shape for every top, or 1 per top
      num channels height width              (legacy 4-D form, instead of shape;
                                              each field given once or once per top)
      data_filler { ... }                    0 (all zeros), 1 for every top, or 1 per top
    }

A top whose filler is "constant" is filled once, at setup; the others are
refilled at every forward (Caffe's refill rule), with draws from
dualnet.random.rng(). No backward.
"""
import numpy as np

from ..errors import LayerError, did_you_mean
from ..fillers import FILLERS, fill, filler
from ..layer import Layer, register


@register("DummyData")
class DummyData(Layer):
    exact_num_bottom = 0
    min_top = 1

    def setup(self, bottom, top):
        p = self.param.dummy_data_param
        num_top = len(top)
        fillers = list(p.data_filler)
        if len(fillers) not in (0, 1, num_top):
            raise LayerError(f"dummy_data_param gives {len(fillers)} data_filler; give 0, 1 or one per top ({num_top})")
        self.fillers = fillers or [filler("constant", value=0)]
        for f in self.fillers:
            if f.type not in FILLERS:
                raise LayerError(f"unknown filler type '{f.type}'{did_you_mean(f.type, FILLERS)} "
                                 f"(known: {', '.join(FILLERS)})")
        self.shapes = self._shapes(p, num_top)
        for i, blob in enumerate(top):
            blob.reshape(self.shapes[i])
            if not self._refills(i):
                fill(blob.data, self._filler(i))

    @staticmethod
    def _shapes(p, num_top):
        legacy = [p.num, p.channels, p.height, p.width]
        if any(len(field) for field in legacy):
            if len(p.shape):
                raise LayerError("dummy_data_param gives both shape and the legacy num/channels/height/width; "
                                 "use one form")
            for name, field in zip(("num", "channels", "height", "width"), legacy):
                if len(field) not in (1, num_top):
                    raise LayerError(f"dummy_data_param gives {len(field)} '{name}'; give 1 or one per top ({num_top})")
            return [tuple(field[i if len(field) > 1 else 0] for field in legacy) for i in range(num_top)]
        if len(p.shape) not in (1, num_top):
            raise LayerError(f"dummy_data_param gives {len(p.shape)} shapes; give 1 or one per top ({num_top})")
        return [tuple(p.shape[i if len(p.shape) > 1 else 0].dim) for i in range(num_top)]

    def _filler(self, i):
        return self.fillers[i if len(self.fillers) > 1 else 0]

    def _refills(self, i):
        return self._filler(i).type != "constant"

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        for i, blob in enumerate(top):
            if self._refills(i):
                blob.data = fill(np.empty(self.shapes[i], dtype=blob.dtype), self._filler(i))
