"""The one random generator behind fillers, dropout and data shuffling.

`seed(s)` (the solver's random_seed) makes a run repeat bit for bit; without
it the generator is seeded from the operating system, as Caffe seeds from
the clock.

With a seed, each layer sets up (fills its weights, draws its shuffle seed)
from a generator of its own, seeded from (s, layer name): a layer starts the
same whatever layers come before it, so a net cut in two starts exactly like
the whole net under the same random_seed.
"""
import contextlib
import zlib

import numpy as np

_generator = np.random.default_rng()
_base_seed = None


def seed(value):
    global _generator, _base_seed
    _base_seed = int(value)
    _generator = np.random.default_rng(_base_seed)


def rng():
    """The current generator (look it up at each use: `seed` replaces it)."""
    return _generator


@contextlib.contextmanager
def layer_stream(layer_name):
    """While a layer sets up: its own generator, when a seed is set."""
    global _generator
    if _base_seed is None:
        yield
        return
    saved = _generator
    _generator = np.random.default_rng([_base_seed, zlib.crc32(layer_name.encode("utf-8"))])
    try:
        yield
    finally:
        _generator = saved


def get_state():
    return _generator.bit_generator.state


def set_state(state):
    _generator.bit_generator.state = state
