"""Each learning-rate policy against its formula evaluated by hand."""
import math

import pytest
from google.protobuf import text_format

from dualnet import dualnet_pb2 as pb
from dualnet.errors import SolverError
from dualnet.lr_policy import check_policy, learning_rate


def solver(text):
    return text_format.Parse(text, pb.SolverParameter())


def rates(param, iterations):
    step, out = 0, []
    for it in iterations:
        rate, step = learning_rate(param, it, step)
        out.append(rate)
    return out


def test_fixed():
    assert rates(solver('lr_policy: "fixed" base_lr: 0.5'), [0, 10, 1000]) == pytest.approx([0.5, 0.5, 0.5])


def test_step_multiplies_by_gamma_every_stepsize():
    p = solver('lr_policy: "step" base_lr: 1 gamma: 0.1 stepsize: 100')
    assert rates(p, [0, 99, 100, 250]) == pytest.approx([1, 1, 0.1, 0.01])


def test_exp():
    p = solver('lr_policy: "exp" base_lr: 2 gamma: 0.5')
    assert rates(p, [0, 1, 3]) == pytest.approx([2, 1, 0.25])


def test_inv_matches_lenet_schedule():
    # base_lr (1 + gamma iter)^-power with Caffe's LeNet values at iteration 10000:
    # 0.01 * (1 + 1)^-0.75 = 0.0059460...
    p = solver('lr_policy: "inv" base_lr: 0.01 gamma: 0.0001 power: 0.75')
    assert rates(p, [0, 10000]) == pytest.approx([0.01, 0.01 * 2 ** -0.75], rel=1e-6)


def test_multistep_advances_at_each_stepvalue():
    p = solver('lr_policy: "multistep" base_lr: 1 gamma: 0.5 stepvalue: 3 stepvalue: 5')
    assert rates(p, range(7)) == pytest.approx([1, 1, 1, 0.5, 0.5, 0.25, 0.25])


def test_multistep_logs_caffes_status_line_at_each_step(dualnet_log):
    p = solver('lr_policy: "multistep" base_lr: 1 gamma: 0.5 stepvalue: 3 stepvalue: 5')
    rates(p, range(7))
    assert [r.getMessage() for r in dualnet_log.records] == [
        "MultiStep Status: Iteration 3, step = 1", "MultiStep Status: Iteration 5, step = 2"]


def test_poly_reaches_zero_at_max_iter():
    p = solver('lr_policy: "poly" base_lr: 1 power: 2 max_iter: 10')
    assert rates(p, [0, 5, 10]) == pytest.approx([1, 0.25, 0])


def test_sigmoid_is_half_at_stepsize():
    p = solver('lr_policy: "sigmoid" base_lr: 1 gamma: 0.1 stepsize: 50')
    got = rates(p, [0, 50, 100])
    assert got == pytest.approx([1 / (1 + math.exp(5)), 0.5, 1 / (1 + math.exp(-5))])


@pytest.mark.parametrize("text,message", [
    ('base_lr: 1', "lr_policy is not set"),
    ('lr_policy: "stepp" base_lr: 1', "did you mean 'step'"),
    ('lr_policy: "step" base_lr: 1', "needs stepsize"),
    ('lr_policy: "poly" base_lr: 1', "needs max_iter"),
])
def test_bad_policies_are_explained(text, message):
    with pytest.raises(SolverError, match=message):
        check_policy(solver(text), "s.prototxt")
