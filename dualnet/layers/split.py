"""Split: one bottom read by several layers (inserted automatically).

    top_k = x (shared array, no copy)        dx = sum_k dy_k
"""
from ..layer import Layer, register


@register("Split")
class Split(Layer):
    exact_num_bottom = 1
    min_top = 1

    def reshape(self, bottom, top):
        for blob in top:
            blob.reshape(bottom[0].shape)

    def forward(self, bottom, top):
        for blob in top:
            blob.data = bottom[0].data

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        total = top[0].diff.copy()
        for blob in top[1:]:
            total += blob.diff
        bottom[0].diff = total
