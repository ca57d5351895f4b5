"""MultinomialLogisticLoss: negative log of given class probabilities.

    p: (N, K, ...) probabilities (e.g. a Softmax top), labels: (N,) integers
    loss = -sum_n log(max(p[n, label_n], 1e-20)) / N
    dp[n, label_n] = -w / (N * max(p[n, label_n], 1e-20)),  0 elsewhere   (w = top diff)

K = count / N; the threshold (Caffe's kLOG_THRESHOLD) keeps log and 1/p finite.
"""
import numpy as np

from ..errors import LayerError
from ..layer import LossLayer, register

LOG_THRESHOLD = 1e-20


@register("MultinomialLogisticLoss")
class MultinomialLogisticLoss(LossLayer):
    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[1].count != bottom[1].shape[0]:
            raise LayerError(
                f"MultinomialLogisticLoss takes one label per sample, got a label blob of shape {bottom[1].shape}"
            )

    def _picked(self, bottom):
        p = bottom[0].data
        N = p.shape[0]
        probs = p.reshape(N, -1)
        labels = bottom[1].data.reshape(N).astype(np.int64)
        K = probs.shape[1]
        bad = (labels < 0) | (labels >= K)
        if bad.any():
            raise LayerError(f"label {labels[bad][0]} is outside 0..{K - 1} for {K} classes")
        return np.maximum(probs[np.arange(N), labels], LOG_THRESHOLD), labels

    def forward(self, bottom, top):
        picked, _ = self._picked(bottom)
        top[0].data = np.asarray(-np.log(picked).sum() / picked.shape[0], dtype=bottom[0].data.dtype)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise LayerError("MultinomialLogisticLoss cannot backpropagate to the label input")
        if not propagate_down[0]:
            return
        picked, labels = self._picked(bottom)
        N = picked.shape[0]
        grad = np.zeros((N, bottom[0].count // N), dtype=bottom[0].data.dtype)
        grad[np.arange(N), labels] = -float(top[0].diff.reshape(())) / N / picked
        bottom[0].diff = grad.reshape(bottom[0].shape)
