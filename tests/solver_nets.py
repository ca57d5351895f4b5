"""Small nets for solver tests whose gradients have a closed form."""
import numpy as np

import dualnet
from dualnet.io import parse_solver_text

# y = w . x (one weight per input, no bias); loss = 1/(2N) sum (y - t)^2.
# dL/dw = 1/N sum_n (w.x_n - t_n) x_n
REGRESSION = """
name: "regression"
layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 4 dim: 2 } } }
layer { name: "t" type: "Input" top: "t" input_param { shape { dim: 4 dim: 1 } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "y"
        param { lr_mult: %(lr_mult)s decay_mult: %(decay_mult)s }
        inner_product_param { num_output: 1 bias_term: false
                              weight_filler { type: "constant" value: 0.5 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "loss" }
"""

X = np.array([[1.0, 2.0], [0.5, -1.0], [-1.5, 0.25], [2.0, 1.0]], dtype=np.float32)
T = np.array([[1.0], [0.0], [-2.0], [0.5]], dtype=np.float32)


def regression_solver(solver_text, lr_mult=1, decay_mult=1):
    """A Solver on the regression net with fixed inputs X, T."""
    net = REGRESSION % {"lr_mult": lr_mult, "decay_mult": decay_mult}
    text = solver_text + "\nnet_param {" + net + "}\n"
    param = parse_solver_text(text, "regression_solver.prototxt")
    solver = dualnet.get_solver(param)
    solver.net.blobs["x"].data[...] = X
    solver.net.blobs["t"].data[...] = T
    return solver


def gradient(w):
    """dL/dw of the regression loss at weights w (shape (2,)), in float64."""
    x, t = X.astype(np.float64), T.astype(np.float64)[:, 0]
    return ((x @ w - t)[:, None] * x).mean(axis=0)


def loss(w):
    x, t = X.astype(np.float64), T.astype(np.float64)[:, 0]
    return 0.5 * ((x @ w - t) ** 2).mean()


def weights(solver):
    return solver.net.params["fc"][0].data[0].astype(np.float64)
