"""The PyTorch reference for the LeNet benchmarks: Caffe's LeNet and its solver in torch.

    conv1 20 5x5 -> max pool 2x2/2 -> conv2 50 5x5 -> max pool 2x2/2
    -> ip1 500 -> ReLU -> ip2 10 -> cross entropy (= SoftmaxWithLoss, mean over the batch)

Initialisation as Caffe's fillers: weights uniform in +-sqrt(3 / fan_in)
("xavier", fan_in = C*KH*KW or the input size), biases 0. The solver is
torch.optim.SGD (its default for-loop implementation on CPU) with Caffe's
momentum 0.9 and weight_decay 0.0005 on every parameter, biases at twice
the rate (lr_mult 2), and the rate set before every step from Caffe's "inv"
policy. One convention differs and cannot be matched exactly with
torch.optim.SGD: torch multiplies the rate into the step (w -= lr * h,
h = m h + g) where Caffe multiplies it into the history (h = m h + lr g,
w -= h); with a constant rate the two are identical, and the work is the same.

Import torch only in a process whose thread variables are already set.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


class LeNet(nn.Module):
    def __init__(self, seed=1):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.ip1 = nn.Linear(800, 500)
        self.ip2 = nn.Linear(500, 10)
        generator = torch.Generator().manual_seed(seed)
        for module in (self.conv1, self.conv2, self.ip1, self.ip2):
            fan_in = module.weight[0].numel()
            bound = math.sqrt(3.0 / fan_in)
            with torch.no_grad():
                module.weight.uniform_(-bound, bound, generator=generator)
                module.bias.zero_()

    def layers(self):
        """(Caffe layer name, function of its input) in order; the last takes the labels too."""
        return [
            ("conv1", self.conv1),
            ("pool1", lambda x: F.max_pool2d(x, 2, 2)),
            ("conv2", self.conv2),
            ("pool2", lambda x: F.max_pool2d(x, 2, 2)),
            ("ip1", lambda x: self.ip1(x.flatten(1))),
            ("relu1", F.relu),
            ("ip2", self.ip2),
        ]

    def forward(self, x):
        for _, layer in self.layers():
            x = layer(x)
        return x


def caffe_sgd(model, momentum=0.9, weight_decay=0.0005):
    """SGD with momentum and L2 decay on every parameter, biases at lr_mult 2."""
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
    biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
    return torch.optim.SGD([{"params": weights, "lr_mult": 1.0}, {"params": biases, "lr_mult": 2.0}],
                           lr=0.01, momentum=momentum, weight_decay=weight_decay)


def inv_rate(iteration, base_lr=0.01, gamma=0.0001, power=0.75):
    """Caffe's "inv" policy: base_lr * (1 + gamma * iter) ^ (-power)."""
    return base_lr * (1 + gamma * iteration) ** (-power)


def train_step(model, optimizer, x, y, iteration):
    """One solver iteration: zero_grad, forward, loss, backward, rate, step; returns the loss."""
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    rate = inv_rate(iteration)
    for group in optimizer.param_groups:
        group["lr"] = rate * group["lr_mult"]
    optimizer.step()
    return loss.item()  # as the dualnet solver, which reads the loss every iteration


def layer_times(model, optimizer, x, y, iterations, clock):
    """Mean per-layer forward and backward ms, plus the update, like Caffe's `time`.

    Each layer runs on a detached copy of its input, so that backward can be
    timed one layer at a time (conv1's input needs no gradient, as in the
    Caffe net). Returns [(name, forward_ms, backward_ms)] with ("update", 0, ms)
    last: zero_grad and the optimizer step.
    """
    names = [name for name, _ in model.layers()] + ["loss"]
    forward = {name: 0.0 for name in names}
    backward = dict(forward)
    update = 0.0
    for _ in range(iterations):
        inputs, outputs = [], []
        h = x
        for name, layer in model.layers() + [("loss", lambda z: F.cross_entropy(z, y))]:
            h = h.detach().requires_grad_(bool(inputs))
            t0 = clock()
            out = layer(h)
            forward[name] += clock() - t0
            inputs.append(h)
            outputs.append(out)
            h = out
        grad = None
        for i in range(len(names) - 1, -1, -1):
            t0 = clock()
            outputs[i].backward(grad)
            backward[names[i]] += clock() - t0
            grad = inputs[i].grad
        t0 = clock()
        optimizer.step()
        optimizer.zero_grad()
        update += clock() - t0
    scale = 1e3 / iterations
    return [(n, forward[n] * scale, backward[n] * scale) for n in names] + [("update", 0.0, update * scale)]
