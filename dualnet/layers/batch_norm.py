"""BatchNorm: normalise each channel (axis 1) to zero mean and unit variance.

    x: (N, C, ...) viewed as (N, C, S);  the statistics run over n and s (m = N*S values)
    with batch statistics (TRAIN by default):
        mean_c = sum(x) / m,   var_c = sum((x - mean_c)^2) / m   (biased)
        y = (x - mean_c) / sqrt(var_c + eps)
        dx = (dy - mean(dy) - mean(dy * y) * y) / sqrt(var_c + eps)    (means over n, s)
      and the running sums are updated (maf = moving_average_fraction, 0.999):
        scale_factor = scale_factor * maf + 1
        mean_sum     = mean_sum * maf + mean_c
        var_sum      = var_sum * maf + var_c * m / (m - 1)   (unbiased; factor 1 if m = 1)
    with global statistics (use_global_stats, TEST by default):
        mean_c = mean_sum / scale_factor,  var_c = var_sum / scale_factor  (0 if scale_factor = 0)
        y as above,   dx = dy / sqrt(var_c + eps)

Blobs, as Caffe's: [mean_sum (C,), var_sum (C,), scale_factor (1,)]. They are
statistics, not learned: like Caffe, setup gives each blob a ParamSpec with
lr_mult 0 in this layer's LayerParameter (which the Net reads after setup),
and refuses a param spec with another lr_mult. No learned scale or shift: that
is a following Scale layer with bias_term. Runs in place.
"""
import numpy as np

from .. import dualnet_pb2 as pb
from ..errors import LayerError
from ..layer import NeuronLayer, register

STATISTICS = ("mean", "variance", "scale factor")


@register("BatchNorm")
class BatchNorm(NeuronLayer):
    def setup(self, bottom, top):
        p = self.param.batch_norm_param
        self.use_global_stats = p.use_global_stats if p.HasField("use_global_stats") else self.phase == pb.TEST
        self.moving_average_fraction, self.eps = p.moving_average_fraction, p.eps
        if bottom[0].num_axes < 1:
            raise LayerError(f"BatchNorm needs a bottom with at least 1 axis, got shape {bottom[0].shape}")
        self.channels = bottom[0].shape[1] if bottom[0].num_axes > 1 else 1
        self.blobs = [self.new_param_blob((self.channels,)), self.new_param_blob((self.channels,)),
                      self.new_param_blob((1,))]
        self._mask_statistics_from_solver()

    def _mask_statistics_from_solver(self):
        specs = self.param.param
        for i, what in enumerate(STATISTICS):
            if i == len(specs):
                specs.add(lr_mult=0.0)
            elif specs[i].lr_mult != 0:
                raise LayerError(
                    f"BatchNorm's blob {i} is the running {what}, not a learned parameter: give it "
                    f"lr_mult: 0 or leave out its param spec (got lr_mult {specs[i].lr_mult:g}); "
                    f"for a learned scale and bias add a Scale layer with bias_term: true"
                )

    def reshape(self, bottom, top):
        shape = bottom[0].shape
        channels = shape[1] if len(shape) > 1 else 1
        if len(shape) < 1 or channels != self.channels:
            raise LayerError(f"BatchNorm was set up for {self.channels} channels, bottom now has shape {shape}")
        top[0].reshape(shape)

    def forward(self, bottom, top):
        x = bottom[0].data
        x3 = x.reshape(x.shape[0], self.channels, -1)
        if self.use_global_stats:
            scale_factor = float(self.blobs[2].data.flat[0])
            factor = 0.0 if scale_factor == 0 else 1.0 / scale_factor
            mean, var = self.blobs[0].data.reshape(-1) * factor, self.blobs[1].data.reshape(-1) * factor
            xc = x3 - mean.reshape(-1, 1)
        else:
            mean = x3.mean(axis=(0, 2))
            xc = x3 - mean.reshape(-1, 1)
            var = np.mean(xc * xc, axis=(0, 2))
            self._update_running_sums(mean, var, x.size // self.channels)
        std = np.sqrt(var + self.eps).reshape(-1, 1)
        y = xc / std
        self.cache["y"], self.cache["std"] = y, std
        top[0].data = y.reshape(x.shape)

    def _update_running_sums(self, mean, var, m):
        maf = self.moving_average_fraction
        mean_sum, var_sum, scale_factor = (blob.data for blob in self.blobs)
        scale_factor *= maf
        scale_factor += 1
        mean_sum *= maf
        mean_sum += mean.reshape(mean_sum.shape)
        var_sum *= maf
        var_sum += (var * (m / (m - 1) if m > 1 else 1.0)).reshape(var_sum.shape)

    def backward(self, top, propagate_down, bottom):
        y, std = self.cache.pop("y"), self.cache.pop("std")
        if not propagate_down[0]:
            return
        dy = top[0].diff.reshape(y.shape)
        if self.use_global_stats:
            dx = dy / std
        else:
            dx = dy - dy.mean(axis=(0, 2), keepdims=True)
            dx -= y * np.mean(dy * y, axis=(0, 2), keepdims=True)
            dx /= std
        bottom[0].diff = dx.reshape(top[0].diff.shape)
