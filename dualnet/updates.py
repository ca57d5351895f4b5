"""Caffe's per-parameter update rules (ComputeUpdateValue of each solver).

Each rule turns the regularised gradient g (the param's diff) into the step
the net subtracts from the weights, in place in `diff`, using its history
blobs h (and v). `lr` is the global rate times the param's lr_mult.

    SGD       h = momentum*h + lr*g;                      step = h
    Nesterov  h' = momentum*h + lr*g;  step = (1+momentum)*h' - momentum*h
    AdaGrad   h += g^2;                step = lr*g / (sqrt(h) + delta)
    RMSProp   h = rms_decay*h + (1-rms_decay)*g^2;  step = lr*g / (sqrt(h) + delta)
    AdaDelta  h = m*h + (1-m)*g^2;   s = g * sqrt((v + delta) / (h + delta))
              v = m*v + (1-m)*s^2;   step = lr*s                 (m = momentum)
    Adam      h = b1*h + (1-b1)*g;   v = b2*v + (1-b2)*g^2;  t = iter + 1
              step = lr * sqrt(1-b2^t)/(1-b1^t) * h / (sqrt(v) + delta)
"""
import numpy as np

from .errors import SolverError


class UpdateRule:
    name = None
    histories = 1           # history blobs per parameter
    allows_momentum = True

    def __init__(self, param):
        self.param = param
        if not self.allows_momentum and param.momentum != 0:
            raise SolverError(f"Momentum cannot be used with {self.name}; remove 'momentum' from the solver")

    def apply(self, diff, data, history, lr, iteration):
        raise NotImplementedError


class SGD(UpdateRule):
    name = "SGD"

    def apply(self, diff, data, history, lr, iteration):
        (h,) = history
        h *= self.param.momentum
        h += lr * diff
        diff[...] = h


class Nesterov(UpdateRule):
    name = "Nesterov"

    def apply(self, diff, data, history, lr, iteration):
        (h,) = history
        momentum = self.param.momentum
        previous = h.copy()
        h *= momentum
        h += lr * diff
        diff[...] = (1 + momentum) * h - momentum * previous


class AdaGrad(UpdateRule):
    name = "AdaGrad"
    allows_momentum = False

    def apply(self, diff, data, history, lr, iteration):
        (h,) = history
        h += diff * diff
        diff[...] = lr * diff / (np.sqrt(h) + self.param.delta)


class RMSProp(UpdateRule):
    name = "RMSProp"
    allows_momentum = False

    def apply(self, diff, data, history, lr, iteration):
        (h,) = history
        decay = self.param.rms_decay
        h *= decay
        h += (1 - decay) * diff * diff
        diff[...] = lr * diff / (np.sqrt(h) + self.param.delta)


class AdaDelta(UpdateRule):
    name = "AdaDelta"
    histories = 2

    def apply(self, diff, data, history, lr, iteration):
        h, v = history
        momentum, delta = self.param.momentum, self.param.delta
        h *= momentum
        h += (1 - momentum) * diff * diff
        step = diff * np.sqrt((v + delta) / (h + delta))
        v *= momentum
        v += (1 - momentum) * step * step
        diff[...] = lr * step


class Adam(UpdateRule):
    name = "Adam"
    histories = 2

    def apply(self, diff, data, history, lr, iteration):
        m, v = history
        beta1, beta2 = self.param.momentum, self.param.momentum2
        t = iteration + 1
        correction = np.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        m *= beta1
        m += (1 - beta1) * diff
        v *= beta2
        v += (1 - beta2) * diff * diff
        diff[...] = lr * correction * m / (np.sqrt(v) + self.param.delta)


RULES = {rule.name: rule for rule in (SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam)}
