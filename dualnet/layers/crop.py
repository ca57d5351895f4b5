"""Crop: cut bottom 0 to the shape of bottom 1 on every axis from crop_param.axis on.

    axis (default 2): axes before it keep bottom 0's size; axes from it on take
    bottom 1's size, starting at `offset` (none: 0; one value: every cropped
    axis; otherwise one value per axis from `axis` to the last)
    (N, C, 10, 10) cropped like (N, C', 6, 8) with offset {2, 1} -> (N, C, 6, 8) = x[:, :, 2:8, 1:9]
    dx_0 = dy placed back at the offsets, 0 elsewhere;  bottom 1 gets no gradient
"""
import numpy as np

from ..errors import LayerError
from ..layer import Layer, canonical_axis, register


@register("Crop")
class Crop(Layer):
    exact_num_bottom = 2
    exact_num_top = 1

    def setup(self, bottom, top):
        p = self.param.crop_param
        num_axes = bottom[0].num_axes
        start = canonical_axis(p.axis, num_axes, "crop_param.axis")
        if len(p.offset) > 1 and start + len(p.offset) != num_axes:
            raise LayerError(
                f"crop_param gives {len(p.offset)} offsets; give one, or one per axis from axis {start} "
                f"to the last ({num_axes - start} for a {num_axes}-D bottom)"
            )

    def reshape(self, bottom, top):
        p = self.param.crop_param
        shape, reference = bottom[0].shape, bottom[1].shape
        start = canonical_axis(p.axis, len(shape), "crop_param.axis")
        if len(reference) < len(shape):
            raise LayerError(f"bottom 1 {reference} has fewer axes than bottom 0 {shape}; it gives the crop size")
        new_shape, offsets = list(shape), [0] * len(shape)
        for i in range(start, len(shape)):
            offset = p.offset[0] if len(p.offset) == 1 else (p.offset[i - start] if p.offset else 0)
            if shape[i] - offset < reference[i]:
                raise LayerError(
                    f"invalid crop parameters in dimension {i}: bottom 0 has size {shape[i]}, cropping "
                    f"{reference[i]} from offset {offset} needs {offset + reference[i]}"
                )
            new_shape[i], offsets[i] = reference[i], offset
        self.window = tuple(slice(o, o + n) for o, n in zip(offsets, new_shape))
        top[0].reshape(new_shape)

    def forward(self, bottom, top):
        top[0].data = bottom[0].data[self.window].copy()

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            dx = np.zeros_like(bottom[0].data)
            dx[self.window] = top[0].diff
            bottom[0].diff = dx
        if propagate_down[1]:
            bottom[1].diff = np.zeros_like(bottom[1].data)

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0
