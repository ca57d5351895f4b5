"""`dualnet test`: score a model's outputs over batches, as Caffe's `caffe test`.

With `iterations=None` it scores exactly one pass over the test set: the
data layer's record count fixes the number of batches, the last batch is
shortened to the remainder, and each batch's outputs are weighted by its
size, so every record counts once.
"""
import math

import numpy as np

from . import dualnet_pb2 as pb
from .errors import DualnetError
from .log import get_logger
from .net import Net

log = get_logger("dualnet.test")


def _epoch_source(net):
    """The single data layer that can report its record count."""
    sources = [layer for layer in net.layers if hasattr(layer, "num_records")]
    if len(sources) != 1:
        raise DualnetError(
            f"--epoch needs exactly one data layer that knows its record count (Data); "
            f"net '{net.name}' has {len(sources)}. Use --iterations instead."
        )
    return sources[0]


def score(net, iterations=None):
    """Weighted mean of every output over the batches; returns {name: value}."""
    batches = [None] * iterations if iterations is not None else None
    if batches is None:
        source = _epoch_source(net)
        total, batch = source.num_records, source.batch_size
        source.rewind()
        count = math.ceil(total / batch)
        batches = [min(batch, total - i * batch) for i in range(count)]
    sums, weight_total, loss_total = {}, 0.0, 0.0
    try:
        for i, size in enumerate(batches):
            if size is not None:
                source.batch_size = size
            outputs = net.forward()
            weight = float(size if size is not None else 1)
            loss_total += net.loss * weight
            for name in net.outputs:
                value = np.asarray(outputs[name], dtype=np.float64)
                sums[name] = sums.get(name, 0.0) + value * weight
                for k, item in enumerate(value.ravel()):
                    label = name if value.size == 1 else f"{name}[{k}]"
                    log.info("Batch %d, %s = %.6g", i, label, item)
            weight_total += weight
    finally:
        if iterations is None:
            source.batch_size = batch
    means = {name: sums[name] / weight_total for name in sums}
    return means, loss_total / weight_total


def test_model(model, weights, iterations=50, phase="TEST"):
    if iterations is not None and iterations <= 0:
        raise DualnetError(f"--iterations must be positive, got {iterations} "
                           "(the number of batches to score; --epoch scores one pass over the test set)")
    net = Net(model, pb.TEST if phase == "TEST" else pb.TRAIN, weights=weights)
    means, loss = score(net, iterations)
    log.info("Loss: %.6g", loss)
    for name in net.outputs:
        weight = net.output_weight(name)
        for k, value in enumerate(np.asarray(means[name]).ravel()):
            label = name if np.size(means[name]) == 1 else f"{name}[{k}]"
            extra = f" (* {weight:.6g} = {weight * value:.6g} loss)" if weight else ""
            log.info("%s = %.6g%s", label, value, extra)
    return means
