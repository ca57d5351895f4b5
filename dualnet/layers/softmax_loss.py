"""SoftmaxWithLoss: softmax over `axis` followed by the multinomial logistic loss.

    p = softmax(x) along axis;  loss = -sum_{valid} log(max(p[label], FLT_MIN)) / normalizer
    dx = (p - onehot(label)) * loss_weight / normalizer   (0 where label == ignore_label)

normalizer (loss_param.normalization): FULL = outer*inner, VALID = number of
non-ignored labels (default), BATCH_SIZE = outer, NONE = 1; never below 1.
The deprecated `normalize: false` means BATCH_SIZE. An optional second top
gives p.
"""
import numpy as np

from .. import dualnet_pb2 as pb
from ..errors import LayerError
from ..layer import LossLayer, canonical_axis, register

FLT_MIN = np.finfo(np.float32).tiny


def normalization_mode(loss_param):
    if loss_param.HasField("normalization"):
        return loss_param.normalization
    if loss_param.HasField("normalize"):
        return pb.LossParameter.VALID if loss_param.normalize else pb.LossParameter.BATCH_SIZE
    return pb.LossParameter.VALID


def normalizer(mode, outer, inner, valid_count):
    """Caffe's get_normalizer; valid_count is None when no label is ignored."""
    if mode == pb.LossParameter.FULL:
        value = outer * inner
    elif mode == pb.LossParameter.VALID:
        value = outer * inner if valid_count is None else valid_count
    elif mode == pb.LossParameter.BATCH_SIZE:
        value = outer
    else:
        value = 1
    return max(1.0, float(value))


def softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=axis, keepdims=True)
    return shifted


@register("SoftmaxWithLoss")
class SoftmaxWithLoss(LossLayer):
    exact_num_top = None
    min_top = 1
    max_top = 2

    def setup(self, bottom, top):
        loss = self.param.loss_param
        self.ignore_label = loss.ignore_label if loss.HasField("ignore_label") else None
        self.mode = normalization_mode(loss)

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        self.axis = canonical_axis(self.param.softmax_param.axis, len(shape), "softmax_param.axis")
        self.outer = int(np.prod(shape[: self.axis]))
        self.inner = int(np.prod(shape[self.axis + 1:]))
        if self.outer * self.inner != bottom[1].count:
            raise LayerError(
                f"number of labels must match number of predictions; e.g., if softmax axis == 1 and "
                f"prediction shape is (N, C, H, W), label count (number of labels) must be N*H*W, "
                f"with integer values in {{0, 1, ..., C-1}}; got predictions {shape} and labels {bottom[1].shape}"
            )
        top[0].reshape(())
        if len(top) > 1:
            top[1].reshape(shape)

    def _labels(self, bottom):
        x = bottom[0].data
        C = x.shape[self.axis]
        labels = bottom[1].data.reshape(self.outer, self.inner).astype(np.int64)
        valid = np.ones_like(labels, dtype=bool) if self.ignore_label is None else labels != self.ignore_label
        bad = valid & ((labels < 0) | (labels >= C))
        if bad.any():
            raise LayerError(f"label {labels[bad][0]} is outside 0..{C - 1} for {C} classes")
        return labels, valid

    def forward(self, bottom, top):
        x = bottom[0].data
        C = x.shape[self.axis]
        prob = softmax(x.reshape(self.outer, C, self.inner), axis=1)
        labels, valid = self._labels(bottom)
        safe = np.where(valid, labels, 0)
        picked = np.take_along_axis(prob, safe[:, None, :], axis=1)[:, 0, :]
        losses = -np.log(np.maximum(picked, FLT_MIN)) * valid
        count = int(valid.sum()) if self.ignore_label is not None else None
        norm = normalizer(self.mode, self.outer, self.inner, count)
        top[0].data = np.asarray(losses.sum() / norm, dtype=x.dtype)
        if len(top) > 1:
            top[1].data = prob.reshape(x.shape)
        self.cache.update(prob=prob, labels=safe, valid=valid, norm=norm)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise LayerError("SoftmaxWithLoss cannot backpropagate to the label input")
        if not propagate_down[0]:
            return
        c = self.cache
        grad = c["prob"].copy()
        np.put_along_axis(
            grad, c["labels"][:, None, :],
            np.take_along_axis(grad, c["labels"][:, None, :], axis=1) - 1, axis=1,
        )
        grad *= c["valid"][:, None, :]
        grad *= top[0].diff.reshape(()) / c["norm"]
        bottom[0].diff = grad.reshape(bottom[0].shape).astype(bottom[0].data.dtype, copy=False)
        self.cache = {}
