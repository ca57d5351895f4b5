"""Each solver type's update against its recurrence written out by hand.

The regression net's gradient has a closed form (solver_nets.gradient), so the
expected weight trajectory is computed here step by step, independently of
dualnet's update code.
"""
import math

import numpy as np
import pytest

from dualnet.errors import SolverError
from solver_nets import gradient, regression_solver, weights

BASE = 'base_lr: 0.1 lr_policy: "fixed" max_iter: 100 display: 0 snapshot_after_train: false '
STEPS = 4


def trajectory(solver, steps=STEPS):
    out = []
    for _ in range(steps):
        solver.step(1)
        out.append(weights(solver))
    return np.array(out)


def expected_sgd(momentum, lr=0.1, steps=STEPS, decay=0.0):
    w, h, out = np.full(2, 0.5), np.zeros(2), []
    for _ in range(steps):
        g = gradient(w) + decay * w
        h = momentum * h + lr * g
        w = w - h
        out.append(w.copy())
    return np.array(out)


def test_sgd_with_momentum():
    got = trajectory(regression_solver(BASE + 'type: "SGD" momentum: 0.9'))
    np.testing.assert_allclose(got, expected_sgd(0.9), rtol=1e-5, atol=1e-6)


def test_nesterov():
    w, h, out = np.full(2, 0.5), np.zeros(2), []
    for _ in range(STEPS):
        g = gradient(w)
        previous = h.copy()
        h = 0.9 * h + 0.1 * g
        w = w - ((1 + 0.9) * h - 0.9 * previous)
        out.append(w.copy())
    got = trajectory(regression_solver(BASE + 'type: "Nesterov" momentum: 0.9'))
    np.testing.assert_allclose(got, out, rtol=1e-5, atol=1e-6)


def test_adagrad():
    w, h, out = np.full(2, 0.5), np.zeros(2), []
    for _ in range(STEPS):
        g = gradient(w)
        h = h + g * g
        w = w - 0.1 * g / (np.sqrt(h) + 1e-8)
        out.append(w.copy())
    got = trajectory(regression_solver(BASE + 'type: "AdaGrad"'))
    np.testing.assert_allclose(got, out, rtol=1e-5, atol=1e-6)


def test_rmsprop():
    w, h, out = np.full(2, 0.5), np.zeros(2), []
    for _ in range(STEPS):
        g = gradient(w)
        h = 0.98 * h + 0.02 * g * g
        w = w - 0.1 * g / (np.sqrt(h) + 1e-8)
        out.append(w.copy())
    got = trajectory(regression_solver(BASE + 'type: "RMSProp" rms_decay: 0.98'))
    np.testing.assert_allclose(got, out, rtol=1e-5, atol=1e-6)


def test_adadelta_applies_the_rate_after_the_update_history():
    # v accumulates the unscaled step; base_lr 0.5 (not 1) tells that apart from
    # scaling the step before v sees it.
    w, h, v, out = np.full(2, 0.5), np.zeros(2), np.zeros(2), []
    delta, m = 1e-6, 0.95
    for _ in range(STEPS):
        g = gradient(w)
        h = m * h + (1 - m) * g * g
        step = g * np.sqrt((v + delta) / (h + delta))
        v = m * v + (1 - m) * step * step
        w = w - 0.5 * step
        out.append(w.copy())
    got = trajectory(regression_solver(
        BASE.replace("base_lr: 0.1", "base_lr: 0.5") + 'type: "AdaDelta" momentum: 0.95 delta: 1e-6'))
    np.testing.assert_allclose(got, out, rtol=1e-4, atol=1e-6)


def test_adam():
    w, m, v, out = np.full(2, 0.5), np.zeros(2), np.zeros(2), []
    for t in range(1, STEPS + 1):
        g = gradient(w)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w = w - 0.1 * math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (np.sqrt(v) + 1e-8)
        out.append(w.copy())
    got = trajectory(regression_solver(BASE + 'type: "Adam" momentum: 0.9 momentum2: 0.999'))
    np.testing.assert_allclose(got, out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["AdaGrad", "RMSProp"])
def test_momentum_is_refused_where_caffe_refuses_it(kind):
    with pytest.raises(SolverError, match=f"Momentum cannot be used with {kind}"):
        regression_solver(BASE + f'type: "{kind}" momentum: 0.9')


def test_l2_weight_decay_uses_decay_mult():
    got = trajectory(regression_solver(BASE + 'type: "SGD" weight_decay: 0.1', decay_mult=2))
    np.testing.assert_allclose(got, expected_sgd(0.0, decay=0.2), rtol=1e-5, atol=1e-6)


def test_l1_weight_decay_adds_sign():
    w, out = np.full(2, 0.5), []
    for _ in range(STEPS):
        w = w - 0.1 * (gradient(w) + 0.05 * np.sign(w))
        out.append(w.copy())
    got = trajectory(regression_solver(BASE + 'type: "SGD" weight_decay: 0.05 regularization_type: "L1"'))
    np.testing.assert_allclose(got, out, rtol=1e-5, atol=1e-6)


def test_lr_mult_scales_the_rate():
    got = trajectory(regression_solver(BASE + 'type: "SGD"', lr_mult=3))
    np.testing.assert_allclose(got, expected_sgd(0.0, lr=0.3), rtol=1e-5, atol=1e-6)


def test_lr_mult_zero_freezes_the_weights():
    got = trajectory(regression_solver(BASE + 'type: "SGD" weight_decay: 0.1', lr_mult=0))
    np.testing.assert_array_equal(got, np.full((STEPS, 2), 0.5))


def test_clip_gradients_scales_to_the_global_norm():
    w, out = np.full(2, 0.5), []
    for _ in range(STEPS):
        g = gradient(w)
        norm = np.linalg.norm(g)
        if norm > 0.05:
            g = g * 0.05 / norm
        w = w - 0.1 * g
        out.append(w.copy())
    got = trajectory(regression_solver(BASE + 'type: "SGD" clip_gradients: 0.05'))
    np.testing.assert_allclose(got, out, rtol=1e-5, atol=1e-6)


def test_iter_size_averages_accumulated_gradients():
    # The same fixed batch twice: the averaged gradient equals one pass's gradient.
    got = trajectory(regression_solver(BASE + 'type: "SGD" iter_size: 3'))
    np.testing.assert_allclose(got, expected_sgd(0.0), rtol=1e-5, atol=1e-6)


def test_clip_applies_before_iter_size_normalisation():
    # Accumulated over 2 passes the norm is twice one pass's; clipping sees that sum.
    w, out = np.full(2, 0.5), []
    for _ in range(STEPS):
        g = 2 * gradient(w)
        norm = np.linalg.norm(g)
        if norm > 0.05:
            g = g * 0.05 / norm
        w = w - 0.1 * g / 2
        out.append(w.copy())
    got = trajectory(regression_solver(BASE + 'type: "SGD" clip_gradients: 0.05 iter_size: 2'))
    np.testing.assert_allclose(got, out, rtol=1e-5, atol=1e-6)
