"""Input: tops whose data the user sets (net.blobs[name].data or forward(name=...)).

input_param gives one shape for every top, one shape per top, or none (the
user reshapes). No computation and no gradient.
"""
from ..errors import LayerError
from ..layer import Layer, register


@register("Input")
class Input(Layer):
    exact_num_bottom = 0
    min_top = 1

    def setup(self, bottom, top):
        shapes = [tuple(s.dim) for s in self.param.input_param.shape]
        if shapes and len(shapes) not in (1, len(top)):
            raise LayerError(
                f"input_param must give 1 shape or one per top ({len(top)}), got {len(shapes)}"
            )
        for i, blob in enumerate(top):
            if shapes:
                blob.reshape(shapes[0] if len(shapes) == 1 else shapes[i])

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass
