"""Caffe's learning-rate policies (SGDSolver::GetLearningRate).

    fixed      base_lr
    step       base_lr * gamma ^ floor(iter / stepsize)
    exp        base_lr * gamma ^ iter
    inv        base_lr * (1 + gamma * iter) ^ (-power)
    multistep  base_lr * gamma ^ step, step advancing by one when iter reaches
               the next stepvalue (at most one step per call, as in Caffe)
    poly       base_lr * (1 - iter / max_iter) ^ power
    sigmoid    base_lr / (1 + exp(-gamma * (iter - stepsize)))
"""
import math

from .errors import SolverError, did_you_mean
from .log import get_logger

log = get_logger("dualnet.solver")

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


def check_policy(param, source="<solver>"):
    """Refuse an unknown policy or missing fields before training starts."""
    policy = param.lr_policy
    if not policy:
        raise SolverError(f"{source}: lr_policy is not set (one of {', '.join(POLICIES)})")
    if policy not in POLICIES:
        raise SolverError(f"{source}: unknown lr_policy '{policy}'{did_you_mean(policy, POLICIES)} "
                          f"(one of {', '.join(POLICIES)})")
    if policy in ("step", "sigmoid") and param.stepsize <= 0:
        raise SolverError(f"{source}: lr_policy '{policy}' needs stepsize > 0")
    if policy == "poly" and param.max_iter <= 0:
        raise SolverError(f"{source}: lr_policy 'poly' needs max_iter > 0")
    if policy == "multistep" and list(param.stepvalue) != sorted(param.stepvalue):
        raise SolverError(f"{source}: multistep stepvalue must be increasing, got {list(param.stepvalue)}; "
                          "list the iterations at which the rate drops in order")


def learning_rate(param, iteration, current_step=0):
    """(rate, current_step) at `iteration`; current_step carries multistep's position."""
    policy, base = param.lr_policy, param.base_lr
    if policy == "fixed":
        return base, current_step
    if policy == "step":
        current_step = iteration // param.stepsize
        return base * param.gamma ** current_step, current_step
    if policy == "exp":
        return base * param.gamma ** iteration, current_step
    if policy == "inv":
        return base * (1 + param.gamma * iteration) ** (-param.power), current_step
    if policy == "multistep":
        if current_step < len(param.stepvalue) and iteration >= param.stepvalue[current_step]:
            current_step += 1
            log.info("MultiStep Status: Iteration %d, step = %d", iteration, current_step)
        return base * param.gamma ** current_step, current_step
    if policy == "poly":
        return base * (1 - iteration / param.max_iter) ** param.power, current_step
    if policy == "sigmoid":
        return base / (1 + math.exp(-param.gamma * (iteration - param.stepsize))), current_step
    raise SolverError(f"unknown lr_policy '{policy}'")
