"""Silence: consume bottoms nobody else reads, so they are not net outputs.

    no tops;  dx_i = 0 for every bottom asked for a gradient
"""
import numpy as np

from ..layer import Layer, register


@register("Silence")
class Silence(Layer):
    min_bottom = 1
    exact_num_top = 0

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        for blob, down in zip(bottom, propagate_down):
            if down:
                blob.diff = np.zeros_like(blob.data)
