"""Accuracy: the fraction of samples whose true class is in the top k scores.

    x: (outer, C, inner) around accuracy_param.axis (default 1); labels: outer*inner
    sample correct  <=>  #{c != label : x_c >= x_label} < top_k
    accuracy = #correct / #counted      (0 when nothing is counted)

Ties count against the true class, as in Caffe: with top_k 1 a sample whose
true score equals another class's score is wrong. Samples labelled
ignore_label are not counted. An optional second top (C,) gives the accuracy
per true class (0 for a class with no samples). No gradient.
"""
import numpy as np

from ..errors import LayerError
from ..layer import Layer, canonical_axis, register


@register("Accuracy")
class Accuracy(Layer):
    exact_num_bottom = 2
    min_top = 1
    max_top = 2

    def setup(self, bottom, top):
        p = self.param.accuracy_param
        self.top_k = p.top_k
        self.ignore_label = p.ignore_label if p.HasField("ignore_label") else None

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        self.axis = canonical_axis(self.param.accuracy_param.axis, len(shape), "accuracy_param.axis")
        self.outer = int(np.prod(shape[: self.axis]))
        self.inner = int(np.prod(shape[self.axis + 1:]))
        num_classes = shape[self.axis]
        if self.top_k > bottom[0].count // max(bottom[1].count, 1):
            raise LayerError(
                f"top_k must be less than or equal to the number of classes: top_k is {self.top_k}, "
                f"predictions {shape} have {num_classes} classes"
            )
        if self.outer * self.inner != bottom[1].count:
            raise LayerError(
                f"number of labels must match number of predictions; e.g., if label axis == 1 and "
                f"prediction shape is (N, C, H, W), label count (number of labels) must be N*H*W, "
                f"with integer values in {{0, 1, ..., C-1}}; got predictions {shape} and labels {bottom[1].shape}"
            )
        top[0].reshape(())
        if len(top) > 1:
            top[1].reshape((num_classes,))

    def forward(self, bottom, top):
        x = bottom[0].data
        C = x.shape[self.axis]
        scores = x.reshape(self.outer, C, self.inner)
        labels = bottom[1].data.reshape(self.outer, self.inner).astype(np.int64)
        valid = np.ones(labels.shape, dtype=bool) if self.ignore_label is None else labels != self.ignore_label
        bad = valid & ((labels < 0) | (labels >= C))
        if bad.any():
            raise LayerError(f"label {labels[bad][0]} is outside 0..{C - 1} for {C} classes")
        safe = np.where(valid, labels, 0)
        true_score = np.take_along_axis(scores, safe[:, None, :], axis=1)
        # The true class itself always satisfies >=, hence the -1.
        at_least_as_good = (scores >= true_score).sum(axis=1) - 1
        correct = valid & (at_least_as_good < self.top_k)
        counted = int(valid.sum())
        top[0].data = np.asarray(correct.sum() / counted if counted else 0.0, dtype=x.dtype)
        if len(top) > 1:
            per_class_count = np.bincount(labels[valid], minlength=C)
            per_class_correct = np.bincount(labels[correct], minlength=C)
            per_class = per_class_correct / np.maximum(per_class_count, 1)
            top[1].data = per_class.astype(x.dtype)

    def allow_force_backward(self, bottom_index):
        return False
