"""Softmax: normalised exponentials along `softmax_param.axis` (default 1).

    y = exp(x - max_c x) / sum_c exp(x - max_c x)       top shape = bottom shape
    dx = y * (dy - sum_c(dy * y))                        (sums over the softmax axis)

For (N, C, H, W) and axis 1 each of the N*H*W columns of C scores sums to 1.
"""
from ..layer import NeuronLayer, canonical_axis, register
from .softmax_loss import softmax


@register("Softmax")
class Softmax(NeuronLayer):
    def reshape(self, bottom, top):
        self.axis = canonical_axis(self.param.softmax_param.axis, bottom[0].num_axes, "softmax_param.axis")
        top[0].reshape(bottom[0].shape)

    def forward(self, bottom, top):
        y = softmax(bottom[0].data, axis=self.axis)
        self.cache["y"] = y
        top[0].data = y

    def backward(self, top, propagate_down, bottom):
        y = self.cache.pop("y")
        if not propagate_down[0]:
            return
        dy = top[0].diff
        bottom[0].diff = y * (dy - (dy * y).sum(axis=self.axis, keepdims=True))
