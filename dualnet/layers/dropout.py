"""Dropout: Caffe's inverted dropout (dropout_param.dropout_ratio r, default 0.5).

    TRAIN:  mask ~ Bernoulli(1 - r) per element, drawn from dualnet.random.rng()
            y = x * mask / (1 - r)          dx = dy * mask / (1 - r)
    TEST:   y = x                           dx = dy

Because kept units are scaled up in training, the TEST net needs no rescaling.
0 <= r < 1. Runs in place: the scaled mask is cached at forward.
"""
import numpy as np

from .. import dualnet_pb2 as pb
from ..errors import LayerError
from ..layer import NeuronLayer, register
from ..random import rng


@register("Dropout")
class Dropout(NeuronLayer):
    def setup(self, bottom, top):
        self.ratio = self.param.dropout_param.dropout_ratio
        if not 0 <= self.ratio < 1:
            raise LayerError(f"dropout_param.dropout_ratio must be in [0, 1), got {self.ratio:g}")
        self.scale = 1.0 / (1.0 - self.ratio)

    def forward(self, bottom, top):
        x = bottom[0].data
        if self.phase != pb.TRAIN:
            top[0].data = x
            return
        keep = rng().random(x.shape, dtype=np.float32) < 1.0 - self.ratio
        self.cache["scaled_mask"] = scaled_mask = keep.astype(x.dtype) * self.scale
        top[0].data = x * scaled_mask

    def backward(self, top, propagate_down, bottom):
        scaled_mask = self.cache.pop("scaled_mask", None)
        if not propagate_down[0]:
            return
        dy = top[0].diff
        if self.phase != pb.TRAIN:
            if bottom[0] is not top[0]:
                bottom[0].diff = dy.copy()
            return
        bottom[0].diff = dy * scaled_mask
