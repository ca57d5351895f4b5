"""SigmoidCrossEntropyLoss: cross-entropy of sigmoid(x) against targets t in [0, 1].

    loss = -sum_{valid i} [t_i log s(x_i) + (1 - t_i) log(1 - s(x_i))] / normalizer
    computed stably as  sum_{valid i} [max(x_i, 0) - x_i t_i + log(1 + exp(-|x_i|))]
    dx = (s(x) - t) * w / normalizer   (0 where int(t) == ignore_label; w = top diff)

x and t have the same count (any shapes); t may be soft. normalizer as in
SoftmaxWithLoss with outer = N = x.shape[0], inner = count / N, except that the
default (neither normalization nor normalize set) is BATCH_SIZE, as in Caffe;
VALID counts the targets not equal to ignore_label.
"""
import numpy as np

from .. import dualnet_pb2 as pb
from ..errors import LayerError
from ..layer import LossLayer, register
from .softmax_loss import normalization_mode, normalizer


@register("SigmoidCrossEntropyLoss")
class SigmoidCrossEntropyLoss(LossLayer):
    def setup(self, bottom, top):
        loss = self.param.loss_param
        self.ignore_label = loss.ignore_label if loss.HasField("ignore_label") else None
        if loss.HasField("normalization") or loss.HasField("normalize"):
            self.mode = normalization_mode(loss)
        else:
            self.mode = pb.LossParameter.BATCH_SIZE

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].count != bottom[1].count:
            raise LayerError(
                f"SigmoidCrossEntropyLoss inputs must have the same count, got shapes "
                f"{bottom[0].shape} ({bottom[0].count}) and {bottom[1].shape} ({bottom[1].count})"
            )

    def forward(self, bottom, top):
        x = bottom[0].data
        t = bottom[1].data.reshape(x.shape)
        losses = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
        if self.ignore_label is None:
            valid, count = None, x.size
        else:
            valid = t.astype(np.int64) != self.ignore_label
            losses = losses * valid
            count = int(valid.sum())
        outer = x.shape[0]
        norm = normalizer(self.mode, outer, x.size // max(outer, 1), count)
        top[0].data = np.asarray(losses.sum() / norm, dtype=x.dtype)
        self.cache.update(valid=valid, norm=norm)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise LayerError("SigmoidCrossEntropyLoss cannot backpropagate to the target input")
        valid, norm = self.cache.pop("valid"), self.cache.pop("norm")
        if not propagate_down[0]:
            return
        x = bottom[0].data
        sigmoid = 0.5 * (1 + np.tanh(0.5 * x))      # no overflow for large |x|
        grad = sigmoid - bottom[1].data.reshape(x.shape)
        if valid is not None:
            grad *= valid
        grad *= float(top[0].diff.reshape(())) / norm
        bottom[0].diff = grad
