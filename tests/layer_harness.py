"""The shared gradient check every layer test calls.

check_gradient() runs a layer in float64, takes the objective
    L = sum_k <top_k.data, R_k>        (R_k fixed random, or 1 for scalar tops)
and compares the analytic bottom and parameter diffs from backward() with
central finite differences (L(x + eps) - L(x - eps)) / 2 eps, element by
element (a random subset for large blobs). Stochastic layers see the same
random numbers at every forward: the generator is reseeded before each one.

import_optional() / missing_optional() are for tests that need an optional
package (lmdb, OpenCV, a protoc): they skip where it is missing, but fail
when DUALNET_REQUIRE_OPTIONAL (or CI) is set, so a CI run that lost one of
the dev extras cannot pass by silently skipping the tests that use it.
"""
import importlib
import os

import numpy as np
import pytest
from google.protobuf import text_format

import dualnet.random
from dualnet import dualnet_pb2 as pb
from dualnet.blob import Blob
from dualnet.layer import create_layer


def layer_param(text):
    return text_format.Parse(text, pb.LayerParameter())


def build(text, bottoms, phase=pb.TRAIN, dtype=np.float64, num_tops=None, in_place=False, seed=1234):
    """Set up a layer on arrays `bottoms`; returns (layer, bottom blobs, top blobs)."""
    param = layer_param(text)
    layer = create_layer(param, phase)
    bottom_blobs = []
    for array in bottoms:
        blob = Blob(np.shape(array), dtype=dtype)
        blob.data[...] = array
        bottom_blobs.append(blob)
    if in_place:
        top_blobs = [bottom_blobs[0]]
    else:
        count = num_tops if num_tops is not None else (len(param.top) or layer.needed_top_count() or 1)
        top_blobs = [Blob((), dtype=dtype) for _ in range(count)]
    layer.check_blob_counts(bottom_blobs, top_blobs)
    dualnet.random.seed(seed)
    layer.setup(bottom_blobs, top_blobs)
    layer.load_blobs_from_param()
    for blob in layer.blobs:
        blob.astype(dtype)
    layer.param_propagate_down = [True] * len(layer.blobs)
    layer.reshape(bottom_blobs, top_blobs)
    return layer, bottom_blobs, top_blobs


def forward(layer, bottom, top, inputs=None, seed=1234):
    if inputs is not None:
        for blob, array in zip(bottom, inputs):
            blob.data = np.array(array, dtype=blob.data.dtype)
    dualnet.random.seed(seed)
    layer.reshape(bottom, top)
    layer.forward(bottom, top)
    return [t.data.copy() for t in top]


def check_gradient(text, bottoms, *, check_bottoms=None, check_params=True, eps=1e-6,
                   rtol=1e-4, atol=1e-6, phase=pb.TRAIN, in_place=False, seed=1234,
                   max_checks=120, top_weights=None, num_tops=None):
    """Assert that backward() matches finite differences; returns the layer."""
    inputs = [np.asarray(b, dtype=np.float64) for b in bottoms]
    layer, bottom, top = build(text, inputs, phase=phase, num_tops=num_tops, in_place=in_place, seed=seed)
    if check_bottoms is None:
        check_bottoms = [i for i in range(len(bottom)) if layer.allow_force_backward(i)]
    outputs = forward(layer, bottom, top, inputs, seed)
    rng = np.random.default_rng(seed + 1)
    weights = []
    for k, out in enumerate(outputs):
        if top_weights is not None:
            weights.append(np.broadcast_to(np.asarray(top_weights[k], dtype=np.float64), out.shape).copy())
        elif out.ndim == 0:
            weights.append(np.ones((), dtype=np.float64))
        else:
            weights.append(rng.standard_normal(out.shape))

    def objective():
        tops = forward(layer, bottom, top, inputs, seed)
        return sum(float((t * w).sum()) for t, w in zip(tops, weights))

    # analytic
    forward(layer, bottom, top, inputs, seed)
    for blob, w in zip(top, weights):
        blob.diff = w.copy()
    for blob in layer.blobs:
        blob.diff[...] = 0
    propagate = [i in check_bottoms for i in range(len(bottom))]
    layer.backward(top, propagate, bottom)
    analytic_bottom = {i: bottom[i].diff.copy() for i in check_bottoms}
    analytic_params = [b.diff.copy() for b in layer.blobs] if check_params else []

    def numeric(array_getter, index):
        array = array_getter()
        original = array[index]
        array[index] = original + eps
        plus = objective()
        array = array_getter()
        array[index] = original - eps
        minus = objective()
        array = array_getter()
        array[index] = original
        return (plus - minus) / (2 * eps)

    def compare(name, analytic, getter, size, shape):
        picks = range(size) if size <= max_checks else rng.choice(size, max_checks, replace=False)
        for flat in picks:
            index = np.unravel_index(flat, shape)
            expected = numeric(getter, index)
            got = analytic[index]
            if not np.isclose(got, expected, rtol=rtol, atol=atol):
                raise AssertionError(
                    f"{layer.type} {name} gradient at {tuple(int(i) for i in index)}: "
                    f"backward gives {got:.8g}, finite differences give {expected:.8g}"
                )

    for i in check_bottoms:
        def bottom_getter(i=i):
            return inputs[i]
        compare(f"bottom {i}", analytic_bottom[i], bottom_getter, inputs[i].size, inputs[i].shape)
    for j, analytic in enumerate(analytic_params):
        def param_getter(j=j):
            return layer.blobs[j].data
        compare(f"param {j}", analytic, param_getter, analytic.size, analytic.shape)
    return layer


def check_param_diffs_accumulate(text, bottoms, phase=pb.TRAIN, seed=1234):
    """Two backward passes must give twice the parameter diff of one (Caffe accumulates)."""
    inputs = [np.asarray(b, dtype=np.float64) for b in bottoms]
    layer, bottom, top = build(text, inputs, phase=phase, seed=seed)
    forward(layer, bottom, top, inputs, seed)
    rng = np.random.default_rng(seed)
    for blob in top:
        blob.diff = rng.standard_normal(blob.data.shape)
    for blob in layer.blobs:
        blob.diff[...] = 0
    propagate = [False] * len(bottom)
    layer.backward(top, propagate, bottom)
    once = [b.diff.copy() for b in layer.blobs]
    forward(layer, bottom, top, inputs, seed)
    layer.backward(top, propagate, bottom)
    for j, (blob, first) in enumerate(zip(layer.blobs, once)):
        np.testing.assert_allclose(blob.diff, 2 * first, rtol=1e-10, atol=1e-12,
                                   err_msg=f"param {j} diff is not accumulated")


# ---------------------------------------------------------------- optional packages

REQUIRE_OPTIONAL = "DUALNET_REQUIRE_OPTIONAL"


def optional_packages_required():
    """True when DUALNET_REQUIRE_OPTIONAL or CI is set (to anything but '', 0, false, no)."""
    return any(os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
               for name in (REQUIRE_OPTIONAL, "CI"))


def missing_optional(reason):
    """Skip the calling test for a missing optional package, or fail it where they are required."""
    if optional_packages_required():
        pytest.fail(f"{reason}; this run requires the optional packages ({REQUIRE_OPTIONAL} or CI is set): "
                    'pip install -e ".[dev]"', pytrace=False)
    pytest.skip(reason)


FASHION = "/usr/share/datasets/fashion-mnist"

# Fashion-MNIST (the Debian package dataset-fashion-mnist): skipped without it, except where the
# optional packages are required (CI), where such a test runs and fails on the missing files.
needs_fashion_mnist = pytest.mark.skipif(not os.path.isdir(FASHION) and not optional_packages_required(),
                                         reason="Fashion-MNIST (apt-get install dataset-fashion-mnist) is not here")


def import_optional(module, reason):
    """The optional `module`, imported; missing_optional(reason) when it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing_optional(reason)
