"""The one random generator behind fillers, dropout and data shuffling.

`seed(s)` (the solver's random_seed) makes a run repeat bit for bit; without
it the generator is seeded from the operating system, as Caffe seeds from
the clock.
"""
import numpy as np

_generator = np.random.default_rng()


def seed(value):
    global _generator
    _generator = np.random.default_rng(int(value))


def rng():
    """The current generator (look it up at each use: `seed` replaces it)."""
    return _generator


def get_state():
    return _generator.bit_generator.state


def set_state(state):
    _generator.bit_generator.state = state
