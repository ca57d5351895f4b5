"""The order in which a data layer visits the records of its source.

Caffe's cursor: records 0, 1, ..., N-1, then from 0 again; a batch may span
the wrap-around. With a shuffle generator every epoch (every pass over the N
records, the first one included) follows a fresh permutation drawn from it.
"""
import numpy as np


class EpochOrder:
    def __init__(self, num_records, shuffle_rng=None):
        if num_records <= 0:
            raise ValueError("a data source needs at least one record")
        self.num_records = num_records
        self.shuffle_rng = shuffle_rng
        self.epoch = 0
        self._order = self._epoch_order()
        self._position = 0

    def _epoch_order(self):
        if self.shuffle_rng is None:
            return np.arange(self.num_records, dtype=np.int64)
        # Remember the generator as it was before this epoch's draw, so a
        # snapshot can redraw the same permutation on resume.
        self._rng_state = self.shuffle_rng.bit_generator.state
        return self.shuffle_rng.permutation(self.num_records).astype(np.int64)

    def get_state(self):
        """Position within the epoch, epoch number, and the shuffle generator (JSON-able)."""
        state = {"epoch": self.epoch, "position": self._position}
        if self.shuffle_rng is not None:
            state["shuffle_rng"] = self._rng_state
        return state

    def set_state(self, state):
        self.epoch, self._position = int(state["epoch"]), int(state["position"])
        if self.shuffle_rng is not None and "shuffle_rng" in state:
            self.shuffle_rng.bit_generator.state = state["shuffle_rng"]
            self._order = self._epoch_order()

    def rewind(self):
        """Back to the first record of the first epoch (order unchanged for unshuffled data)."""
        self.epoch, self._position = 0, 0

    def next(self, count):
        """The indices of the next `count` records (int64), wrapping around."""
        pieces = []
        while count > 0:
            if self._position == self.num_records:
                self.epoch += 1
                self._order = self._epoch_order()
                self._position = 0
            take = min(count, self.num_records - self._position)
            pieces.append(self._order[self._position:self._position + take])
            self._position += take
            count -= take
        if not pieces:
            return np.empty(0, dtype=np.int64)
        return np.concatenate(pieces)
